"""A real-data pipeline's params.yaml is the sample's params.yaml plus its params.overrides.yaml.

The sample's params.yaml is the one documented source of defaults; a pipeline's overrides file says
only what differs; the params.yaml DVC reads is generated from the two (pipelines/sync_params.py).
"""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from stages.errors import ParamError
from stages.params import overlay_params
from tests.conftest import ROOT

PIPELINES = sorted(p.parent for p in ROOT.glob("pipelines/*/params.overrides.yaml"))


def _sync_module():
    spec = importlib.util.spec_from_file_location("sync_params", ROOT / "pipelines" / "sync_params.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_real_data_pipeline_has_overrides():
    assert {p.name for p in PIPELINES} == {p.parent.name for p in ROOT.glob("pipelines/*/dvc.yaml")}


@pytest.mark.parametrize("folder", PIPELINES, ids=lambda p: p.name)
def test_params_yaml_is_generated_from_the_sample_and_the_overrides(folder):
    expected = _sync_module().generated(folder)
    assert (folder / "params.yaml").read_text() == expected, (
        f"{folder.name}/params.yaml is out of date: run `python pipelines/sync_params.py`")


@pytest.mark.parametrize("folder", PIPELINES, ids=lambda p: p.name)
def test_overrides_say_only_what_differs(folder):
    sample = yaml.safe_load((ROOT / "params.yaml").read_text())
    overrides = yaml.safe_load((folder / "params.overrides.yaml").read_text())
    same = [f"{name}.{key}" for name, body in overrides.items() if name not in ("drop", "variants")
            for key, value in body.items() if sample.get(name, {}).get(key, object()) == value]
    assert not same, f"{folder.name}/params.overrides.yaml repeats the sample's value of {same}"


def test_overlay_replaces_keys_drops_sections_and_rejects_unknown_ones():
    sample = {"a": {"x": 1, "y": {"k": 1}}, "b": {"z": 2}, "variants": {"full": {}}}
    merged = overlay_params(sample, {"drop": ["b"], "a": {"y": {"j": 2}}, "variants": {"v": {}}})
    assert merged == {"a": {"x": 1, "y": {"j": 2}}, "variants": {"v": {}}}
    assert sample["a"]["y"] == {"k": 1}  # the sample is not changed
    with pytest.raises(ParamError, match="drop unknown section c"):
        overlay_params(sample, {"drop": ["c"]})
    with pytest.raises(ParamError, match="section b"):
        overlay_params(sample, {"drop": ["b"], "b": {"z": 3}})
