"""linewatch agent: measures a line and its power, detects outages, keeps a local store."""

__version__ = "0.1.0"
