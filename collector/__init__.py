"""linewatch collector: regional reliability statistics from many agents (built in a later issue)."""
