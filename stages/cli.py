"""The one typer app. Stage modules keep heavy imports (torch, spacy, pyarrow...) inside
their command functions so that `python -m stages --help` stays fast."""

from __future__ import annotations

import typer

from stages import (
    compare,
    diff,
    evaluate,
    explain,
    features,
    llm_graphs,
    parse,
    predict,
    ridge,
    sample,
    seed_mean,
    text_features,
    train,
)

app = typer.Typer(
    help="SSU pipeline: multimodal sentiment analysis with the Structural-Semantic Unifier.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (command name, stage module, help panel) in pipeline order.
COMMANDS = [
    ("sample", sample, "Data"),
    ("features", features, "Data"),
    ("parse", parse, "Data"),
    ("text-features", text_features, "Data"),
    ("train", train, "Model"),
    ("llm-graphs", llm_graphs, "Model"),
    ("evaluate", evaluate, "Evaluation"),
    ("ridge", ridge, "Evaluation"),
    ("seed-mean", seed_mean, "Evaluation"),
    ("compare", compare, "Evaluation"),
    ("diff", diff, "Evaluation"),
    ("explain", explain, "Evaluation"),
    ("predict", predict, "Using a trained model"),
]

for _name, _module, _panel in COMMANDS:
    app.command(_name, rich_help_panel=_panel)(_module.main)
