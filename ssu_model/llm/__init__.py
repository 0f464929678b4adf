"""The LLM graph-constructor baseline: loading a causal LM, the constructor, its cached states."""
