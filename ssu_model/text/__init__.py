"""Text: the spaCy dependency parse, sub-word maps, the parse cache, the text encoder and its assets."""
