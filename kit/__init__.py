"""The shared kit: what the agent and the collector both build on. It imports neither."""
