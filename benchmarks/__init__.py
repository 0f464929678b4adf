"""Speed and memory measurements: scripts that print tables, and the clock helpers and latency
records they share with the `llm-graphs` stage (never timed asserts in tests)."""
