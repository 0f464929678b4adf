"""dvc.yaml and the code agree on which params.yaml sections each stage reads."""

import shlex

import yaml

from stages.cli import COMMANDS
from stages.params import load_params
from tests.conftest import DVC_FILES, ROOT

MODULES = {name: module for name, module, _panel in COMMANDS}
# A variant's stages depend on its own entry of `variants`, not the whole section, so changing one
# variant re-runs that variant only. train-llm trains no params variant (its overrides are none) and
# explain reads the two variants it explains; train-finetuned (mosei-text: a stage per seed) its one;
# text-features reads a variant's text_features only with --variant (mosei-mpnet's last4).
PER_VARIANT = {"train": [["variants.${key}"], ["variants.${item}"]], "train-llm": [[]],
               "train-finetuned": [["variants.finetuned"]], "train-last4": [["variants.last4"]],
               "text-features": [[]], "text-features-last4": [["variants.last4"]],
               "explain": [["variants.${explain.variant}", "variants.${explain.compare_to}"]]}


def _sections(stage: str, declared: list[str]) -> set[str]:
    """The whole sections a stage's params entries stand for (a per-variant entry for `variants`)."""
    per_variant = PER_VARIANT.get(stage)
    if per_variant is None:
        return set(declared)
    assert [p for p in declared if p.startswith("variants")] in per_variant, (
        f"dvc stage {stage} must declare {' or '.join(map(str, per_variant))} variants entries, got {declared}")
    return {p for p in declared if not p.startswith("variants")} | {"variants"}


def _stage_bodies(dvc_file=ROOT / "dvc.yaml"):
    stages = yaml.safe_load(dvc_file.read_text())["stages"] or {}
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
        assert all(isinstance(p, str) and ("." not in p or name in PER_VARIANT) for p in declared), (
            f"dvc stage {name} must declare whole params sections, got {declared}"
        )
        assert _sections(name, declared) == set(MODULES[command].SECTIONS), (
            f"dvc stage {name}: dvc.yaml declares {sorted(declared)} "
            f"but stages/{MODULES[command].__name__.split('.')[-1]}.py reads {sorted(MODULES[command].SECTIONS)}"
        )
        for section in _sections(name, declared):
            assert section in params, f"dvc stage {name} declares missing params section {section}"


def test_every_params_section_is_read_by_some_stage():
    params = load_params(ROOT / "params.yaml")
    read = {s for _n, module, _p in COMMANDS for s in module.SECTIONS}
    assert set(params) <= read, f"params.yaml sections no stage reads: {sorted(set(params) - read)}"


def test_real_data_pipelines_run_from_the_root_with_their_own_params_file():
    """pipelines/<name>/dvc.yaml: every stage runs from the repository root (wdir ../..), passes
    --params <its folder>/params.yaml, declares whole sections of that file that the code reads,
    and writes only inside its folder (the sample pipeline's outputs are never touched)."""
    pipelines = [f for f in DVC_FILES if f.parent != ROOT]
    assert pipelines, "no real-data pipelines under pipelines/"
    for dvc_file in pipelines:
        doc = yaml.safe_load(dvc_file.read_text())
        folder = str(dvc_file.parent.relative_to(ROOT))
        assert {"dir": folder} in doc["vars"], f"{dvc_file}: vars must set dir: {folder}"
        params = load_params(dvc_file.parent / "params.yaml")
        for name, body in _stage_bodies(dvc_file):
            where = f"{folder}/dvc.yaml:{name}"
            assert body.get("wdir") == "../..", f"{where}: wdir must be ../.. (the repository root)"
            words = shlex.split(body["cmd"])
            command = _command_of(body["cmd"])
            if not MODULES[command].SECTIONS:  # a command that reads no params (diff): none declared
                assert "--params" not in words and "params" not in body, f"{where}: reads no params"
            else:
                assert words[words.index("--params") + 1] == "${dir}/params.yaml", where
                (declared,) = body["params"]
                assert list(declared) == ["${dir}/params.yaml"], where
                sections = declared["${dir}/params.yaml"]
                assert _sections(name, sections) == set(MODULES[command].SECTIONS), (
                    f"{where}: declares {sorted(sections)}, stages/{command} reads {sorted(MODULES[command].SECTIONS)}")
                assert all(sec in params for sec in _sections(name, sections)), f"{where}: params section missing"
            for kind in ("outs", "metrics", "plots"):
                for out in body.get(kind, []):
                    path = next(iter(out)) if isinstance(out, dict) else out
                    assert path.startswith("${dir}/") or path.startswith("${"), f"{where}: {kind} {path} outside {folder}"
        for key, value in _paths_in(params):
            if key == "llm_graphs.convert_out":  # the root pipeline's converted LLM, read (not written) here
                continue
            if key.endswith(("out", "input", "metrics", "features", "parse", "text_features", "latency_out", "plot")):
                assert str(value).startswith(folder + "/"), f"{folder}/params.yaml {key}: {value} is outside {folder}"


def _paths_in(params, prefix=""):
    for key, value in params.items():
        if isinstance(value, dict):
            yield from _paths_in(value, f"{prefix}{key}.")
        elif isinstance(value, str):
            yield f"{prefix}{key}", value
