"""A setting's default is written once: the library's config dataclasses default to the sample's
params.yaml (the documented source), field by field, wherever a params key names the same field."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from ssu_model.llm.constructor import ConstructorConfig
from ssu_model.ssu.config import SSUConfig
from ssu_model.text.parse_table import ParseConfig
from ssu_model.train.config import TrainConfig
from tests.conftest import ROOT

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
# (config class, params section, {params key: field} where the names differ; None: the stage
# resolves the key to the field, e.g. the tokenizer name `minilm` to its installed folder)
PAIRS = [
    (SSUConfig, "model", {}),
    (TrainConfig, "train", {}),
    (ConstructorConfig, "llm_graphs", {}),
    (ConstructorConfig, "model", {}),
    (ParseConfig, "parse", {"spacy_model": "model", "max_cache_shards": "max_shards",
                                 "tokenizer": None}),
]


def _shared(cls, section: str, renamed: dict[str, str]) -> dict[str, tuple]:
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    out = {}
    for key, value in PARAMS[section].items():
        field = renamed.get(key, key)
        if field is not None and field in defaults:
            out[f"{section}.{key}"] = (value, defaults[field])
    return out


@pytest.mark.parametrize("cls, section, renamed", PAIRS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_config_defaults_are_the_sample_params(cls, section, renamed):
    shared = _shared(cls, section, renamed)
    assert shared, f"{cls.__name__} shares no field with params.yaml {section}"
    differ = {k: v for k, v in shared.items() if v[0] != v[1]}
    assert not differ, f"{cls.__name__} defaults differ from params.yaml (params, default): {differ}"


def test_every_model_param_is_an_ssu_config_field():
    fields = {f.name for f in dataclasses.fields(SSUConfig)}
    assert set(PARAMS["model"]) <= fields
