"""Data: source readers, the per-split feature files, utterance records and batches, the sample."""
