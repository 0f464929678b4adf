"""The names every data module shares: the dataset's splits and its sequence streams.

``SPLITS`` are the three splits of every dataset, in the order they are written and reported;
``SPLIT_ALIASES`` maps a source's split name (MMSA pickles and label CSVs say ``dev`` as well
as ``valid``) to one of them. ``STREAMS`` are the sequence features an utterance may carry
besides its text; ``MODALITIES`` are what a model may read: the text, always, plus the streams
(also the node-state columns an LLM states file may hold, in this order).
"""

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"train": "train", "valid": "valid", "dev": "valid", "test": "test"}
STREAMS = ("audio", "vision")
MODALITIES = ("text", *STREAMS)
