"""Sentence embeddings the way sentence-transformers makes them: the mean of a text's sub-word states.

This is the input of the ridge reference (``ssu_model.eval.ridge``), the baseline the data README
quotes for every dataset: all-MiniLM-L6-v2's own pooling (mean over every token the attention mask
keeps, [CLS] and [SEP] included), on the raw text, cut at ``max_length`` sub-words. It is not what SSU
reads (word states from the parse, ``text_encoder``); it is what a reader would compute without SSU.

Texts run in order of length, so that a batch holds little padding; rows come back in input order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


@torch.no_grad()
def mean_pooled_embeddings(model, tokenizer, texts: Sequence[str], max_length: int = 256,
                           batch_size: int = 64) -> np.ndarray:
    """(len(texts), hidden) float32: the masked mean of ``model``'s last hidden states per text."""
    was_training = model.training
    model.eval()
    hidden = int(model.config.hidden_size)
    out = np.zeros((len(texts), hidden), dtype=np.float32)
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)  # once; batches only pad
    order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = tokenizer.pad({key: [encoded[key][i] for i in idx] for key in ("input_ids", "attention_mask")},
                              padding=True, return_tensors="pt")
        states = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        out[idx] = pooled.float().numpy()
    model.train(was_training)
    return out
