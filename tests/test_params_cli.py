"""params.yaml validation and the CLI shell (help panels, exit codes)."""

import dataclasses
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from stages.cli import app
from stages.errors import ParamError
from stages.params import BaseParams, DataParams, build, load_params, load_section
from tests.conftest import ROOT

runner = CliRunner()


def test_params_yaml_sections_load():
    params = load_params(ROOT / "params.yaml")
    base = load_section(params, "base", BaseParams)
    assert base.seeds and base.device in ("auto", "cpu", "cuda")
    assert load_section(params, "data", DataParams).path


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"seeds": [0], "device": "auto", "extra": 1}, "unknown param base.extra"),
        ({"seeds": [0]}, "missing param base.device"),
        ({"seeds": [0], "device": "tpu"}, "device must be auto, cpu or cuda"),
        ({"seeds": [], "device": "cpu"}, "at least one seed"),
        ({"seeds": [1, 1], "device": "cpu"}, "distinct"),
        ({"seeds": ["a"], "device": "cpu"}, "base.seeds[0] must be an integer"),
    ],
)
def test_bad_base_params_name_the_key(raw, message):
    with pytest.raises(ParamError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(BaseParams, raw, "base")


def test_params_are_frozen():
    base = build(BaseParams, {"seeds": [0], "device": "cpu"}, "base")
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.device = "cuda"  # type: ignore[misc]


def test_help_lists_panels():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for panel in ("Data", "Model", "Evaluation"):
        assert panel in result.output
    for command in ("sample", "features", "parse", "train", "evaluate", "llm-graphs", "compare"):
        assert command in result.output


def test_unknown_command_is_usage_error():
    result = runner.invoke(app, ["no-such-stage"])
    assert result.exit_code == 2


def test_help_is_fast_and_imports_no_heavy_modules():
    code = (
        "import sys, runpy; sys.argv=['stages','--help'];\n"
        "try:\n runpy.run_module('stages', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "heavy=[m for m in ('torch','spacy','transformers','torch_geometric','pyarrow') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-500:]
    assert time.perf_counter() - start < 20
