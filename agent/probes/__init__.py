"""Probes: one module per way of measuring the line, each a pure core with a thin I/O edge."""
