"""dvc.yaml lists every code file a stage runs, derived from the imports; stages never import each other.

For each stage of dvc.yaml (a `foreach` stage through its `do` template) the command of its `cmd`
(`python -m stages <command>`) gives the stage module (via `stages.cli.COMMANDS`); the code the
stage runs is the transitive closure of that module's project-internal imports (modules under
stages/ and ssu_model/), read with `ast` from every `import` statement, including those inside
functions (the stages keep heavy imports there). DVC re-runs a stage when one of its `deps`
changes, so a file of that closure missing from `deps` is a change DVC would not see.

Pure ast + yaml: nothing here imports torch or runs a stage.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import yaml

from stages.cli import COMMANDS
from tests.conftest import DVC_FILES, ROOT

INTERNAL = ("stages", "ssu_model", "benchmarks")  # benchmarks: the shared timing code llm-graphs runs
# Never counted as a stage's code. stages/cli.py and stages/__main__.py only dispatch: cli.py imports
# every stage module to register its command, so following it would make every stage depend on every
# other; what a stage computes is its module's code, not the wiring. The package __init__.py files
# only hold a docstring (test_package_inits_import_nothing_internal keeps it that way).
NOT_STAGE_CODE = {Path("stages/cli.py"), Path("stages/__main__.py"), Path("stages/__init__.py"),
                  *(path.relative_to(ROOT) for path in (ROOT / "ssu_model").rglob("__init__.py"))}
# Modules under stages/ that are shared helpers, not stages: any stage may import them.
STAGE_MODULES = {Path(module.__file__).resolve().relative_to(ROOT): name for name, module, _p in COMMANDS}


def _module_file(module: str) -> Path | None:
    """stages/x.py or a package's __init__.py for a dotted internal module name, else None."""
    parts = module.split(".")
    if parts[0] not in INTERNAL:
        return None
    base = Path(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def _package_of(path: Path) -> list[str]:
    """Dotted parts of the package a file belongs to (for relative imports)."""
    return list(path.parent.parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """(internal module name, line) for every import in the file, at any depth.

    `from pkg import name` counts as the submodule pkg.name when that is a module (e.g.
    `from ssu_model import sample`), else as pkg itself.
    """
    tree = ast.parse((ROOT / path).read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(path)
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if _module_file(sub) is not None else base, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] in INTERNAL]


def _closure(start: Path) -> tuple[dict[Path, list[Path]], list[str]]:
    """({internal file `start` runs: the import chain that reaches it}, imports that name no internal file)."""
    chains: dict[Path, list[Path]] = {start: [start]}
    unresolved: list[str] = []
    todo = [start]
    while todo:  # breadth first: each chain is a shortest one
        path = todo.pop(0)
        for name, line in _imports(path):
            target = _module_file(name)
            if target is None:
                unresolved.append(f"{path}:{line} imports {name}, which is no module under {' or '.join(INTERNAL)}/")
            elif target not in chains and target not in NOT_STAGE_CODE:
                chains[target] = chains[path] + [target]
                todo.append(target)
    return chains, unresolved


def _command_of(cmd) -> str:
    words = shlex.split(cmd if isinstance(cmd, str) else cmd[0])
    assert "stages" in words, f"stage command must be `python -m stages ...`: {cmd}"
    return words[words.index("stages") + 1]


def _stages():
    """(dvc stage name, stage module file, declared deps) per stage of every dvc.yaml (foreach: the
    template); stages of the real-data pipelines are named <folder>/dvc.yaml:<stage>."""
    modules = {name: path for path, name in STAGE_MODULES.items()}
    for dvc_file in DVC_FILES:
        stages = yaml.safe_load(dvc_file.read_text())["stages"] or {}
        where = "" if dvc_file.parent == ROOT else f"{dvc_file.relative_to(ROOT)}:"
        assert stages, f"{dvc_file} has no stages"
        for name, stage in stages.items():
            body = stage.get("do", stage)
            command = _command_of(body["cmd"])
            assert command in modules, f"dvc stage {where}{name} runs unknown command {command}"
            yield where + name, modules[command], [str(d) for d in body.get("deps", [])]


def _is_code(dep: str) -> bool:
    return dep.endswith(".py") and dep.split("/")[0] in INTERNAL


def test_every_stage_lists_the_code_it_imports_in_its_deps():
    problems = []
    for name, module, deps in _stages():
        code, unresolved = _closure(module)
        problems += unresolved
        for path in sorted(code):
            if str(path) not in deps:
                chain = " -> ".join(map(str, code[path]))
                problems.append(f"dvc stage {name} runs {path} ({chain}) but dvc.yaml does not list it in its deps")
    assert not problems, "\n".join(sorted(set(problems)))


def test_no_stage_lists_code_it_does_not_run():
    """A stale code dep re-runs a stage for a change that cannot affect it."""
    problems = []
    for name, module, deps in _stages():
        code, _unresolved = _closure(module)
        for dep in deps:
            if _is_code(dep) and Path(dep) not in code:
                problems.append(f"dvc stage {name} lists {dep} in its deps, but {module} never imports it")
    assert not problems, "\n".join(problems)


def test_stage_modules_never_import_each_other():
    """Shared code lives in stages/common.py, params.py, errors.py, inputs.py, modelling.py or ssu_model/."""
    problems = []
    for path in sorted((ROOT / "stages").glob("*.py")):
        path = path.relative_to(ROOT)
        if path in NOT_STAGE_CODE:
            continue
        for name, line in _imports(path):
            target = _module_file(name)
            if target in STAGE_MODULES and target != path:
                problems.append(f"{path}:{line} imports the stage module {name} (stage `{STAGE_MODULES[target]}`): "
                                "stages never import each other; move what they share to a helper module "
                                "(stages/common.py, stages/params.py, ...) or to ssu_model/")
    assert not problems, "\n".join(problems)


def test_package_inits_import_nothing_internal():
    """The closure skips the package __init__.py files: that is only right while they import nothing."""
    for init in sorted(p for p in NOT_STAGE_CODE if p.name == "__init__.py"):
        assert not _imports(init), f"{init} imports {_imports(init)}: tests/test_dvc_deps.py must follow it"


def test_closure_follows_function_level_and_package_imports():
    """The walk sees imports inside functions and `from ssu_model import reporting` style imports."""
    train, _ = _closure(Path("stages/train.py"))
    assert Path("ssu_model/train/loop.py") in train  # imported inside train.main only
    compare, _ = _closure(Path("stages/compare.py"))
    assert Path("ssu_model/eval/reporting.py") in compare  # `from ssu_model import reporting`
    assert Path("stages/cli.py") not in train and Path("stages/__init__.py") not in compare
