"""Length-bucketed training batches (train.length_buckets): a cover of the corpus, less padding,
seeded, and wired into `fit`."""

import numpy as np
import pytest

from ssu_model.train.length_batches import length_batches


def _padding(lengths, batches):
    return sum(max(lengths[i] for i in b) * len(b) for b in batches) / sum(lengths)


def test_length_batches_cover_every_index_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 129, size=1000).tolist()
    batches = length_batches(lengths, 32, 10, seed=5)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    assert sorted(len(b) for b in batches) == [8] + [32] * 31  # 3 runs of 320, then one of 40
    random_order = [list(rng.permutation(1000)[k:k + 32]) for k in range(0, 1000, 32)]
    assert _padding(lengths, batches) < 1.2 < _padding(lengths, random_order)
    assert length_batches(lengths, 32, 10, seed=5) == batches
    assert length_batches(lengths, 32, 10, seed=6) != batches
    # buckets of one batch: a plain seeded shuffle cut into batches (each sorted inside)
    one = length_batches(lengths, 32, 1, seed=5)
    assert _padding(lengths, one) > 1.5
    with pytest.raises(ValueError):
        length_batches(lengths, 32, 0, seed=0)


def test_max_tokens_caps_the_padded_size_of_each_batch():
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, 129, size=500).tolist() + [300]  # one longer than the cap: alone
    capped = length_batches(lengths, 32, 10, seed=2, max_tokens=1024)
    assert sorted(i for b in capped for i in b) == list(range(501))
    assert all(len(b) <= 32 for b in capped)
    assert all(len(b) * max(lengths[i] for i in b) <= 1024 for b in capped if len(b) > 1)
    assert [500] in capped
    assert max(len(b) for b in capped) == 32  # short texts still fill whole batches
    uncapped = length_batches(lengths, 32, 10, seed=2)
    assert max(len(b) * max(lengths[i] for i in b) for b in uncapped) > 1024
    assert length_batches(lengths, 32, 10, seed=2, max_tokens=0) == uncapped


def test_the_train_stage_draws_length_batches_when_asked(tmp_path, monkeypatch):
    """train.length_buckets > 0: every epoch's batches come from length_batches, seeded by seed and
    epoch, and the model differs from the one trained on batches drawn at random."""
    import torch
    from typer.testing import CliRunner

    import ssu_model.train.loop as loop
    from stages.cli import app
    from tests.test_train import _edit, make_workspace, train_args

    ws = make_workspace(tmp_path, seeds=(3,))
    calls = []
    real = loop.length_batches

    def spy(lengths, batch_size, buckets, seed, max_tokens):
        calls.append((len(lengths), batch_size, buckets, seed, max_tokens))
        return real(lengths, batch_size, buckets, seed, max_tokens)

    monkeypatch.setattr(loop, "length_batches", spy)
    runner = CliRunner()
    r = runner.invoke(app, train_args(ws))
    assert r.exit_code == 0 and calls == [], r.output
    random_state = torch.load(ws / "models" / "full" / "seed_3.pt", weights_only=True)["state"]
    _edit(ws, lambda p: p["train"].update(length_buckets=2, max_batch_tokens=40))
    r = runner.invoke(app, train_args(ws))
    assert r.exit_code == 0, r.output
    epochs = len(calls)
    assert epochs >= 1 and calls == [(24, 8, 2, 3 * 100003 + e, 40) for e in range(1, epochs + 1)]
    bucketed = torch.load(ws / "models" / "full" / "seed_3.pt", weights_only=True)["state"]
    assert any(not torch.equal(random_state[k], bucketed[k]) for k in random_state)
