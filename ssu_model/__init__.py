"""SSU library: data schema and readers, syntax graphs, the SSU model, losses, metrics,
training loop and the LLM graph constructor. No CLI and no hard-coded paths."""

__version__ = "0.1.0"
