"""dvc.yaml and the code agree on which params.yaml sections each stage reads."""

import shlex

import yaml

from stages.cli import COMMANDS
from stages.params import load_params
from tests.conftest import ROOT

MODULES = {name: module for name, module, _panel in COMMANDS}


def _stage_bodies():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"] or {}
    for name, stage in stages.items():
        yield name, stage.get("do", stage)


def _command_of(cmd: str) -> str:
    words = shlex.split(cmd if isinstance(cmd, str) else cmd[0])
    assert "stages" in words, f"stage command must be `python -m stages ...`: {cmd}"
    return words[words.index("stages") + 1]


def test_every_stage_runs_a_cli_command_and_declares_exactly_its_sections():
    params = load_params(ROOT / "params.yaml")
    bodies = list(_stage_bodies())
    assert bodies, "dvc.yaml has no stages"
    for name, body in bodies:
        command = _command_of(body["cmd"])
        assert command in MODULES, f"dvc stage {name} runs unknown command {command}"
        declared = body.get("params", [])
        assert all(isinstance(p, str) and "." not in p for p in declared), (
            f"dvc stage {name} must declare whole params sections, got {declared}"
        )
        assert set(declared) == set(MODULES[command].SECTIONS), (
            f"dvc stage {name}: dvc.yaml declares {sorted(declared)} "
            f"but stages/{MODULES[command].__name__.split('.')[-1]}.py reads {sorted(MODULES[command].SECTIONS)}"
        )
        for section in declared:
            assert section in params, f"dvc stage {name} declares missing params section {section}"


def test_every_params_section_is_read_by_some_stage():
    params = load_params(ROOT / "params.yaml")
    read = {s for _n, module, _p in COMMANDS for s in module.SECTIONS}
    assert set(params) <= read, f"params.yaml sections no stage reads: {sorted(set(params) - read)}"
