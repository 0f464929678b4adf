"""ssu.scoring.regression_scores: SSU.forward's prediction, bit for bit, without the augmented view
and the losses (what `predict` scores frozen-encoder models with)."""

from __future__ import annotations

import pytest
import torch
from test_model import UNALIGNED, batch, tiny

from ssu_model.ssu.model import SSU
from ssu_model.ssu.scoring import regression_scores


def trained_like(seed=0, **over) -> SSU:
    """A tiny model with non-trivial weights (random init), in eval mode."""
    torch.manual_seed(seed)
    model = SSU(tiny(**over))
    with torch.no_grad():  # the anchor gate and the threshold start at values that hide edges
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("over", [
    {},
    {"use_anchor": False},
    {"cross_modal_edges": False},
    {"audio_dim": None, "vision_dim": None},
    {"standardize_streams": True},
])
def test_scores_equal_forward_prediction_bit_for_bit(over):
    model = trained_like(**over)
    if over.get("standardize_streams"):
        model.graph_builder.standardizer.fit({"audio": torch.randn(40, 5), "vision": torch.randn(40, 7)})
    for b in (batch(seed=3), batch(seed=4, lengths=UNALIGNED)):
        with torch.no_grad():
            expected = model(b).prediction
        got = regression_scores(model, b)
        assert got.shape == (b.text.shape[0],)
        assert torch.equal(got, expected)


def test_scores_read_the_fusion_view():
    """The fusion GAT's weights move the score (a scoring path that dropped z_fuse would not)."""
    model = trained_like()
    b = batch(seed=5)
    before = regression_scores(model, b)
    with torch.no_grad():
        for p in model.fusion_gat.parameters():
            p.add_(0.5)
    assert not torch.allclose(regression_scores(model, b), before)


def test_train_mode_is_refused():
    model = trained_like().train()
    with pytest.raises(ValueError, match="eval mode"):
        regression_scores(model, batch())
