"""The names every data module shares: the dataset's splits and its sequence streams.

``SPLITS`` are the three splits of every dataset, in the order they are written and reported;
``SPLIT_ALIASES`` maps a source's split name (MMSA pickles and label CSVs say ``dev`` as well
as ``valid``) to one of them. ``STREAMS`` are the sequence features an utterance may carry
besides its text (what the model reads is a choice of ``text`` plus these, called modalities).
"""

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"train": "train", "valid": "valid", "dev": "valid", "test": "test"}
STREAMS = ("audio", "vision")
