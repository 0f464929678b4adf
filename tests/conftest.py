import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MOSI_CSV = SHARED_DATA / "mosi_label_mmcpanda.csv"
MOSEI_CSV = SHARED_DATA / "mosei_label_ailiwood_mme0621.csv"
# The DVC pipelines: the sample one at the root (the default `dvc repro`) and the real-data ones.
DVC_FILES = [ROOT / "dvc.yaml", *sorted(ROOT.glob("pipelines/*/dvc.yaml"))]

# Tests never touch the network, and torch uses the 2 cores predictably.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def mosi_csv() -> Path:
    if not MOSI_CSV.is_file():
        pytest.skip(f"real MOSI transcripts not present at {MOSI_CSV}")
    return MOSI_CSV


@pytest.fixture
def mosei_csv() -> Path:
    if not MOSEI_CSV.is_file():
        pytest.skip(f"real MOSEI transcripts not present at {MOSEI_CSV}")
    return MOSEI_CSV
