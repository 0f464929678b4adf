"""The process-wide memo of loaded spaCy pipelines and Hugging Face tokenizers.

A long-lived process (the test-suite, a benchmark, ``predict``) loads each pipeline and
tokenizer once, keyed by its identity (``ModelInfo`` / ``TokenizerInfo``); one shared
memo lets ``clear_loaded()`` forget both at once, so a benchmark's cold run really loads.
"""

from __future__ import annotations

from typing import Any

LOADED: dict[Any, Any] = {}


def clear_loaded() -> None:
    """Forget every pipeline and tokenizer loaded so far in this process."""
    LOADED.clear()
