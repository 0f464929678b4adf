"""Drawing the Figs. 5-7 counterparts from the figure data `explain` writes as JSON.

Each function takes exactly the document that goes into the JSON file next to the PNG and
returns a matplotlib Figure, so a figure can only show what its JSON holds. The document's
``variants`` list gives the order: the explained model (paper: with the anchor) first, the one
it is compared with second. As in the paper, Fig. 5 draws the explained model left, and Fig. 7
the compared one (paper: without the anchor) left, top-N weights boxed in red.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

COLOURS = ("#1f77b4", "#ff7f0e")  # the explained model, the one it is compared with


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path) -> None:
    """PNG without the Software/date metadata, so a re-run writes the same bytes."""
    plt = _pyplot()
    fig.savefig(str(path), dpi=100, format="png", metadata={"Software": None})
    plt.close(fig)


def _node_labels(entry: Mapping[str, Any]) -> list[str]:
    steps = entry.get("steps")
    if not steps:
        return [str(i) for i in range(entry["nodes"])]
    return [f"{a}" if a == b else f"{a}-{b}" for a, b in steps]


def _plain(text: str) -> str:
    """A data string (an id like 'cM3Yna7AavY$_$14', a word) shown as it is, not as mathtext."""
    return str(text).replace("$", r"\$")


def _with_anchor(doc: Mapping[str, Any], name: str) -> str:
    """'full (with the anchor)': the model's name and whether it has the semantic anchor."""
    return f"{name} ({'with' if doc['use_anchor'][name] else 'without'} the anchor)"


def _message(ax, text: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, wrap=True, transform=ax.transAxes)


def _footer(subfig, text: str) -> None:
    """Definitions under the panels (a subfigure of its own, so the layout makes room for them)."""
    subfig.text(0.01, 0.95, text, fontsize=7, va="top", ha="left", wrap=True)


# ----------------------------------------------------------------------------- Fig. 5


def draw_loss_surfaces(doc: Mapping[str, Any]):
    """Contours of the chosen loss over the 2-D grid, one panel per model with shared levels,
    plus the two axis slices of both models; sharpness in the titles, definitions underneath."""
    plt = _pyplot()
    names = doc["variants"]
    loss = doc["loss"]
    alphas = np.asarray(doc["grid"]["alphas"])
    betas = np.asarray(doc["grid"]["betas"])
    surfaces = {n: np.asarray(doc["models"][n]["surface"][loss]) for n in names}
    lo = min(float(s.min()) for s in surfaces.values())
    hi = max(float(s.max()) for s in surfaces.values())
    levels = np.linspace(lo, hi, 16) if hi > lo else np.linspace(lo - 1e-6, hi + 1e-6, 3)
    fig = plt.figure(figsize=(14, 5.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[5, 0.9])
    axes = top.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.1]})
    for ax, name in zip(axes, names):
        m = doc["models"][name]
        # contour(X, Y, Z) reads Z[y, x]: rows of the surface are alphas (d1), so transpose
        cs = ax.contourf(alphas, betas, surfaces[name].T, levels=levels, cmap="viridis")
        ax.contour(alphas, betas, surfaces[name].T, levels=levels, colors="k", linewidths=0.3)
        ax.plot([0], [0], marker="x", color="red", ms=8)
        ax.add_patch(plt.Circle((0, 0), doc["sharpness_radius"], fill=False, ls="--", color="white", lw=0.8))
        ax.set_title(f"{_with_anchor(doc, name)}, seed {doc['seed']}\nsharpness {m['sharpness']:.4f}; "
                     f"centre {m['centre'][loss]:.4f}, grid min {m['min']:.4f}, max {m['max']:.4f}", fontsize=9)
        ax.set_xlabel("alpha (direction d1)")
        ax.set_ylabel("beta (direction d2)")
        ax.set_aspect("equal")
    top.colorbar(cs, ax=list(axes[:2]), shrink=0.85, label=f"loss ({loss})")
    ax = axes[2]
    mid_a, mid_b = len(alphas) // 2, len(betas) // 2
    for colour, name in zip(COLOURS, names):
        s = surfaces[name]
        ax.plot(alphas, s[:, mid_b], color=colour, label=f"{name}: along d1")
        ax.plot(betas, s[mid_a, :], color=colour, ls="--", label=f"{name}: along d2")
    ax.set_xlabel("step along the direction")
    ax.set_ylabel(f"loss ({loss})")
    ax.set_title("slices through the trained weights", fontsize=9)
    ax.legend(fontsize=7)
    top.suptitle("Loss surface around the trained weights (paper Fig. 5)", fontsize=11)
    batch = doc["batch"]
    _footer(bottom, f"Loss: {doc['loss_definition']} Fixed batch: {len(batch['ids'])} {batch['split']} utterances "
                    f"(drawn with seed {batch['seed']}). Directions: {doc['directions']['method']} "
                    f"Sharpness: {doc['sharpness_definition']} (dashed circle).")
    return fig


# ----------------------------------------------------------------------------- Fig. 6


def _beta_panel(ax, utt: Mapping[str, Any], names, modality: str) -> None:
    entries = [utt["models"][n]["beta"][modality] for n in names]
    ok = [(n, e) for n, e in zip(names, entries) if e["status"] == "ok"]
    notes = [f"{n}: {e['status']}" for n, e in zip(names, entries) if e["status"] != "ok"]
    what = "words" if modality == "text" else f"{modality} nodes"
    if not ok:
        ax.set_title(f"anchor attention over {what}", fontsize=9)
        _message(ax, "\n".join(notes))
        return
    width = 0.8 / len(ok)
    for k, (n, e) in enumerate(ok):
        x = np.arange(e["nodes"]) + (k - (len(ok) - 1) / 2) * width
        ent = e["normalised_entropy"]
        spread = "one node: beta = 1 by construction" if ent is None else f"entropy {ent:.2f}"
        ax.bar(x, e["weights"], width=width, color=COLOURS[names.index(n)], label=f"{n} ({spread})")
        for top in e["top"]:  # the most attended nodes: a marker over their bars
            ax.plot(x[top["node"]], top["weight"], marker="v", color="k", ms=4)
    first = ok[0][1]
    if modality == "text":
        ax.set_xticks(np.arange(first["nodes"]), [_plain(w) for w in utt["words"]], rotation=60, fontsize=7)
    else:
        ax.set_xticks(np.arange(first["nodes"]), _node_labels(first), rotation=90, fontsize=6)
        ax.set_xlabel(f"{modality} node ({_steps_note(first)})", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("beta (Eq. 7)")
    ax.set_title(f"anchor attention over {what}", fontsize=9)
    ax.legend(fontsize=6, loc="upper right")
    if notes:
        ax.text(0.01, 0.98, "\n".join(notes), transform=ax.transAxes, va="top", fontsize=6)


def _steps_note(entry: Mapping[str, Any]) -> str:
    """How the stream's nodes relate to its input steps, for an axis label."""
    steps = entry.get("steps") or []
    n_steps = sum(b - a + 1 for a, b in steps)
    if len(steps) == 1 and n_steps == 1:
        return "one vector per utterance"
    if len(steps) < n_steps:
        return f"{n_steps} input steps pooled to {len(steps)} nodes; ticks: steps"
    return "one node per input step"


def draw_predictions(doc: Mapping[str, Any]):
    """Per utterance: every seed's prediction of both models against the label, and the anchor
    attention beta over the words and the audio/vision nodes (the attention seed's model)."""
    plt = _pyplot()
    names = doc["variants"]
    utts = doc["utterances"]
    fig = plt.figure(figsize=(17, 4.3 * len(utts) + 0.8), layout="constrained")
    subs = fig.subfigures(len(utts) + 1, 1, height_ratios=[4.3] * len(utts) + [0.5], squeeze=False)[:, 0]
    for sub, utt in zip(subs, utts):
        row = sub.subplots(1, 4, gridspec_kw={"width_ratios": [0.8, 1.6, 1, 1]})
        ax = row[0]
        for k, n in enumerate(names):
            m = utt["models"][n]
            preds = [m["predictions"][s] for s in sorted(m["predictions"], key=int)]
            ax.scatter([k] * len(preds), preds, color=COLOURS[k], s=18, zorder=3)
            ax.bar([k], [m["prediction_mean"]], color=COLOURS[k], alpha=0.35, width=0.6)
            ax.annotate(f"{m['prediction_mean']:+.2f}", (k, m["prediction_mean"]), textcoords="offset points",
                        xytext=(14, 0), fontsize=8)
        ax.axhline(utt["label"], color="k", ls="--", lw=1, label=f"label {utt['label']:+.2f}")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_xlim(-0.6, len(names) - 0.2)
        ax.set_ylim(-3.2, 3.2)
        ax.set_ylabel("prediction (raw regression output)", fontsize=8)
        ax.set_title(f"{len(doc['seeds'])} seeds (dots), mean (bar)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        for ax, modality in zip(row[1:], ("text", "audio", "vision")):
            _beta_panel(ax, utt, names, modality)
        sub.suptitle(f"{_plain(utt['id'])} ({utt['split']}): \"{_plain(utt['text'])}\"", fontsize=10)
    roles = "; ".join(f"{n}: beta {utts[0]['models'][n]['beta_role']}" for n in names) if utts else ""
    _footer(subs[-1], f"Predictions of {_with_anchor(doc, names[0])} and {_with_anchor(doc, names[1])} (paper "
                      f"Fig. 6). Beta from the forward pass of seed {doc['seed']}'s checkpoint; triangles mark the "
                      f"{doc['top_nodes']} most attended nodes; entropy = entropy / log(nodes) "
                      "(1 uniform, 0 one node). "
                      f"{roles}.")
    return fig


# ----------------------------------------------------------------------------- Fig. 7


def _attention_panel(ax, utt: Mapping[str, Any], name: str, modality: str, vmax: float) -> None:
    model = utt["models"][name]
    entry = model["cross_attention"][modality]
    if entry["status"] != "ok":
        ax.set_title(f"{name}: text-to-{modality}", fontsize=8)
        _message(ax, f"{modality}: {entry['status']}\n({name} reads {' + '.join(model['reads'])})")
        return
    plt = _pyplot()
    matrix = np.asarray(entry["matrix"])
    ax.imshow(matrix, aspect="auto", cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    for top in entry["top"]:  # the top-N weights, boxed as the paper's red boxes
        ax.add_patch(plt.Rectangle((top["word"] - 0.5, top["node"] - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
    ax.set_xticks(range(len(utt["words"])), [_plain(w) for w in utt["words"]], rotation=60, fontsize=7)
    ax.set_yticks(range(entry["nodes"]), _node_labels(entry), fontsize=6)
    title = f"{name}: text-to-{modality} (Eq. 1), mean row entropy {entry['mean_row_entropy']:.2f}"
    if entry["one_node"]:
        title += (f"\none {modality} node per utterance (utterance-level features): "
                  f"a 1 x {len(utt['words'])} map, no time axis")
    ax.set_ylabel(f"{modality} node\n({_steps_note(entry)})", fontsize=7)
    ax.set_title(title, fontsize=8)


def draw_cross_attention(doc: Mapping[str, Any]):
    """Per utterance and stream: the text-to-stream attention maps of the model compared with
    (left; in the paper the one without the anchor) and of the explained model (right), on one
    colour scale per row, top-N weights boxed; a stream a model does not read says so."""
    plt = _pyplot()
    names = doc["variants"]
    order = list(reversed(names))  # the paper: without the anchor on the left
    utts = doc["utterances"]
    streams = ("audio", "vision")
    fig = plt.figure(figsize=(14, 3.9 * len(utts) * len(streams) + 0.8), layout="constrained")
    subs = fig.subfigures(len(utts) + 1, 1, height_ratios=[3.9 * len(streams)] * len(utts) + [0.5],
                          squeeze=False)[:, 0]
    for sub, utt in zip(subs, utts):
        axes = sub.subplots(len(streams), 2, squeeze=False)
        for row, modality in zip(axes, streams):
            maps = [np.asarray(utt["models"][n]["cross_attention"][modality]["matrix"]) for n in order
                    if utt["models"][n]["cross_attention"][modality]["status"] == "ok"]
            vmax = max((float(m.max()) for m in maps), default=1.0) or 1.0
            for ax, name in zip(row, order):
                _attention_panel(ax, utt, name, modality, vmax)
        sub.suptitle(f"{_plain(utt['id'])} ({utt['split']}): \"{_plain(utt['text'])}\"", fontsize=10)
    _footer(subs[-1], f"Cross-modal attention maps (paper Fig. 7): {_with_anchor(doc, order[0])} left, "
                      f"{_with_anchor(doc, order[1])} right; seed {doc['seed']}. Rows: the stream's nodes (the "
                      f"queries), columns: words; each row sums to 1; one colour scale per row of panels; red "
                      f"boxes: the {doc['top_n']} largest weights. Mean row entropy: entropy / log(words), 1 = "
                      f"uniform over the words.")
    return fig
