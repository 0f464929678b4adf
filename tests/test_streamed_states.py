"""text-features writes each split through ssu_model.text.streamed_states: the same bytes as the
whole-split encode_flat + write_flat_text_states, in slices and chunks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from ssu_model.errors import DataError
from ssu_model.text import streamed_states
from ssu_model.text.streamed_states import write_streamed_states
from ssu_model.text.text_encoder import EncodedText, TextEncoder, write_flat_text_states


class PaddingSensitiveModel(nn.Module):
    """Hidden states that depend on the batch's padded width, as real GEMM blocking can: a
    changed batch composition changes the bytes."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(1000, dim)

    def forward(self, input_ids, attention_mask):
        width = float(input_ids.shape[1])
        return SimpleNamespace(last_hidden_state=self.embed(input_ids) * (1.0 + 1e-3 * width))


class TinyEncoder(TextEncoder):
    """The production TextEncoder (forward, encode_flat) over a tiny fake transformer."""

    def __init__(self, dim: int = 6) -> None:
        nn.Module.__init__(self)
        torch.manual_seed(0)
        self.model = PaddingSensitiveModel(dim)
        self.dim, self.max_length, self.pad_id, self.layers = dim, 128, 0, 1
        self.requires_grad_(False)  # as the stage sets it


def fake_corpus(n: int, seed: int = 0) -> list[EncodedText]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        n_words = int(rng.integers(0, 9))
        lens = rng.integers(1, 3, size=n_words)
        start = 1 + np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if n_words else np.zeros(0, np.int64)
        end = (start + lens).astype(np.int64) if n_words else np.zeros(0, np.int64)
        ids = rng.integers(1, 1000, size=int(lens.sum()) + 2).astype(np.int64)
        out.append(EncodedText(ids, start, end))
    return out


def whole_split_file(path, encoder, encoded, ids, batch_size):
    flat, offsets = encoder.encode_flat(encoded, batch_size=batch_size)
    write_flat_text_states(path, ids, flat, offsets, "enc", encoder.max_length)
    return path.read_bytes()


def test_streamed_file_is_the_whole_split_file_over_several_slices_and_chunks(tmp_path):
    """4,100+ rows: two Arrow record batches, many encoder slices."""
    encoder, encoded = TinyEncoder(), fake_corpus(4_500)
    ids = [f"u{i}" for i in range(len(encoded))]
    expected = whole_split_file(tmp_path / "whole.arrow", encoder, encoded, ids, batch_size=16)
    words = write_streamed_states(encoder, encoded, ids, tmp_path / "streamed.arrow", "enc", batch_size=16)
    assert words == sum(e.n_words for e in encoded)
    assert (tmp_path / "streamed.arrow").read_bytes() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.arrow", "whole.arrow"]  # no scratch left


def test_slices_keep_the_encoder_batches(tmp_path, monkeypatch):
    """A slice that is not whole batches would regroup the batches: the fake model's bytes move."""
    encoder, encoded = TinyEncoder(), fake_corpus(300, seed=1)
    ids = [f"u{i}" for i in range(len(encoded))]
    expected = whole_split_file(tmp_path / "whole.arrow", encoder, encoded, ids, batch_size=8)
    monkeypatch.setattr(streamed_states, "SLICE_BATCHES", 3)
    write_streamed_states(encoder, encoded, ids, tmp_path / "a.arrow", "enc", batch_size=8)
    assert (tmp_path / "a.arrow").read_bytes() == expected
    # the check can fail: encoding in a different grouping gives other bytes
    write_streamed_states(encoder, encoded, ids, tmp_path / "b.arrow", "enc", batch_size=7)
    assert (tmp_path / "b.arrow").read_bytes() != expected


def test_freed_memory_is_handed_back_after_every_slice(tmp_path, monkeypatch):
    """One trim per encoder slice (the heap would otherwise keep every batch's activations)."""
    calls = []
    monkeypatch.setattr(streamed_states, "_release_free_memory", lambda: calls.append(1))
    encoder, encoded = TinyEncoder(), fake_corpus(100, seed=2)
    write_streamed_states(encoder, encoded, [f"u{i}" for i in range(100)], tmp_path / "x.arrow", "enc", batch_size=8)
    assert len(calls) == -(-100 // (8 * streamed_states.SLICE_BATCHES))


def test_streamed_states_refuse_mismatched_ids(tmp_path):
    with pytest.raises(DataError, match="differ in length"):
        write_streamed_states(TinyEncoder(), fake_corpus(3), ["a"], tmp_path / "x.arrow", "enc")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_streamed_states_with_real_minilm_match_encode_flat(tmp_path, monkeypatch):
    """The real MiniLM, 3 slices of 4-text batches: the same bytes as one encode_flat."""
    from ssu_model.data.sentences import distinct_sentences

    encoder = TextEncoder(None, max_length=128)
    encoder.requires_grad_(False)
    texts = distinct_sentences(40, seed=0)
    encoded = [encoder.encode(t.split()) for t in texts]
    ids = [f"s{i}" for i in range(len(texts))]
    expected = whole_split_file(tmp_path / "whole.arrow", encoder, encoded, ids, batch_size=4)
    monkeypatch.setattr(streamed_states, "SLICE_BATCHES", 3)
    write_streamed_states(encoder, encoded, ids, tmp_path / "streamed.arrow", "enc", batch_size=4)
    assert (tmp_path / "streamed.arrow").read_bytes() == expected
