"""Graph-construction time per batch: SSU vs LLM graph constructors, side by side, from raw text.

Same machine, same batch of ``--batch`` MOSI-shaped utterances (distinct sentences of the sample
generator's templates, random A5/V20 streams of ``--steps`` steps), warm (one untimed call of each
path first). ``--texts-csv PATH`` takes the texts from a label CSV instead (e.g. CMU-MOSEI's
``mosei_label_ailiwood_mme0621.csv``): the first ``--batch`` utterances of split ``--split``
(default test) in id order (``label_csv.read_scoring_csv``). ``--text-only``: the utterances carry
no audio/vision streams, SSU has no audio/vision (``audio_dim=vision_dim=None``) and the LM reads
the prompt and the words only (no stream markers, no projected steps). The report and every JSON
record (``inputs``) name the texts: source file, split, batch size, mean words, text only or not.

The clocks are those of the `llm-graphs` stage, the functions of ``benchmarks.constructor_latency``
(``benchmarks.latency_record.latency_report`` names what each covers):

- ``ssu_from_raw_text`` (headline): ``constructor_latency.ssu_from_raw_text``, the calls `predict` makes
  on new text: spaCy parse + sub-word map (no cache), sub-word ids, text-encoder forward, records,
  collate, ``SSU.build_graphs``; ``ssu_from_raw_text_no_encoder``: the same calls without their
  encoder-forward step;
- ``ssu_graphs_only_cached_inputs``: ``SSU.build_graphs`` alone on the collated records;
- ``llm_from_raw_text``: LM input building (LLM tokenizer on the words, projections of the
  streams, none with ``--text-only``) + forward to the penultimate layer + word pooling + collate +
  ``SSU(graph_source="llm").build_graphs``.

Each of the ``--repeats`` LLM calls is one "timed batch"; the ``--ssu-repeats`` SSU-from-raw-text
calls of that batch run before or after it, alternating (machine noise hits both sides). The
spaCy model is the project default (``parse_table.ParseConfig``), the text encoder all-MiniLM-L6-v2;
``--no-raw-text`` (a machine without spaCy/MiniLM, e.g. a lent GPU image) times graphs only,
with random word states, and says so.

LLMs: ``--llm PATH`` (a HF folder, a .gguf file, or ``smollm2`` = the shipped GGUF) and/or
``--arch NAME`` (random weights from a built-in config: smollm2-135m, gemma-2b, mistral-7b,
qwen2.5-7b, llama-3.1-8b; the paper's constructors). Random weights are fine for timing and make
the GPU run possible without carrying weights (a lent GPU image has no gguf package).

    python benchmarks/bench_llm_latency.py --llm models/pretrained/smollm2 --repeats 3
    python benchmarks/bench_llm_latency.py --llm models/pretrained/smollm2 --text-only \
        --texts-csv ../shared/data/mosei_label_ailiwood_mme0621.csv --split test --repeats 3
    python benchmarks/bench_llm_latency.py --device cuda --precision bf16 --arch smollm2-135m --arch gemma-2b \
        --arch mistral-7b --arch qwen2.5-7b --arch llama-3.1-8b --llm-max-nodes 0 --no-raw-text
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.constructor_latency import LatencyRuns, LatencySides, timed_batch  # noqa: E402
from benchmarks.latency_record import LATENCY_WHAT, latency_report  # noqa: E402
from benchmarks.timing import median  # noqa: E402
from ssu_model.data.batching import UtteranceRecord  # noqa: E402
from ssu_model.data.label_csv import read_scoring_csv  # noqa: E402
from ssu_model.data.sentences import distinct_sentences  # noqa: E402
from ssu_model.data.splits import SPLIT_ALIASES  # noqa: E402
from ssu_model.llm.constructor import ConstructorConfig, LLMGraphConstructor, Utterance  # noqa: E402
from ssu_model.llm.loading import PRECISIONS, SMOLLM2, count_params, load_causal_lm, load_llm_tokenizer  # noqa: E402
from ssu_model.ssu.model import SSU, SSUConfig  # noqa: E402

# Public architecture sizes (config.json of each model); random weights are used.
ARCHS = {
    "smollm2-135m": ("llama", {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                               "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
                               "tie_word_embeddings": True}),
    "gemma-2b": ("gemma", {"hidden_size": 2048, "intermediate_size": 16384, "num_hidden_layers": 18,
                           "num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 256000}),
    "mistral-7b": ("mistral", {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                               "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000}),
    "qwen2.5-7b": ("qwen2", {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                             "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064}),
    "llama-3.1-8b": ("llama", {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                               "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256}),
}


class WhitespaceTokenizer:
    """Stand-in tokenizer for random-weight architectures: one id per word (hash into the vocab)."""

    def __init__(self, vocab: int):
        self.vocab = vocab
        self.eos_token_id = 0

    def __call__(self, text, add_special_tokens=True):
        ids = [(sum(map(ord, w)) * 2654435761) % self.vocab for w in text.split()]
        return {"input_ids": ([1] if add_special_tokens else []) + ids}


def random_arch(name: str, dtype, device):
    from transformers import AutoConfig, AutoModelForCausalLM

    kind, kw = ARCHS[name]
    cfg = AutoConfig.for_model(kind, **kw)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model.eval().requires_grad_(False), WhitespaceTokenizer(kw["vocab_size"])


def streams(n: int, steps: int, rng, text_only: bool = False) -> dict:
    """Random A5/V20 streams of ``steps`` steps ({} when ``text_only``)."""
    if text_only:
        return {}
    return {m: (rng.normal(size=(n, steps, dim)).astype(np.float32), np.full(n, steps, dtype=np.int32))
            for m, dim in (("audio", 5), ("vision", 20))}


def synthetic_records(words: list[list[str]], streams_: dict, rng) -> list[UtteranceRecord]:
    """Records with random word states and chain trees (``--no-raw-text``: no parse, no encoder)."""
    recs = []
    for i, w in enumerate(words):
        k = len(w)
        recs.append(UtteranceRecord(rng.normal(size=(k, 384)).astype(np.float32), np.array([max(j - 1, 0) for j in range(k)]),
                                    list(rng.integers(1, 40, k)), stream_of(streams_, "audio", i),
                                    stream_of(streams_, "vision", i), 0.0))
    return recs


def stream_of(streams_: dict, m: str, i: int) -> np.ndarray | None:
    """Utterance ``i``'s ``m`` steps, or None without that stream (``--text-only``)."""
    return streams_[m][0][i] if m in streams_ else None


def batch_texts(args) -> tuple[list[str], list[str], dict[str, Any]]:
    """(ids, texts, what they are): the first ``--batch`` utterances of ``--split`` of ``--texts-csv``
    in id order, else ``distinct_sentences``."""
    if args.texts_csv is None:
        return [str(i) for i in range(args.batch)], distinct_sentences(args.batch), {"source": "distinct_sentences"}
    utts = read_scoring_csv(args.texts_csv, (args.split,))
    if len(utts) < args.batch:
        raise SystemExit(f"{args.texts_csv}: split {args.split!r} has {len(utts)} utterances, --batch is {args.batch}")
    return (list(utts.ids[: args.batch]), list(utts.texts[: args.batch]),
            {"source": args.texts_csv.name, "split": args.split, "order": "first --batch utterances in id order"})


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llm", action="append", default=[], help="LM folder / .gguf / smollm2 (repeatable)")
    ap.add_argument("--arch", action="append", default=[], choices=sorted(ARCHS), help="random-weight architecture")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50, help="audio/vision steps per utterance (MOSI aligned: 50)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="SSU size from its `model` section")
    ap.add_argument("--max-nodes", type=int, default=None, help="SSU max_nodes (default: the params file's)")
    ap.add_argument("--hidden", type=int, default=None, help="SSU hidden (default: the params file's)")
    ap.add_argument("--llm-max-nodes", type=int, default=4, help="steps per stream the LM reads (0 = max_nodes)")
    ap.add_argument("--prompt", default="Sentiment:", help="offline prompt (params.yaml llm_graphs.prompt)")
    ap.add_argument("--repeats", type=int, default=3, help="timed LLM calls (= timed batches)")
    ap.add_argument("--ssu-repeats", type=int, default=3, help="SSU-from-raw-text calls per timed batch")
    ap.add_argument("--graphs-repeats", type=int, default=10, help="SSU build_graphs calls per timed batch")
    ap.add_argument("--encoder-batch", type=int, default=64, help="utterances per encoder forward (text_features.batch_size)")
    ap.add_argument("--no-raw-text", action="store_true", help="graphs only: no spaCy / text encoder on this machine")
    ap.add_argument("--texts-csv", type=Path, help="label CSV (video_id,clip_id,text,label,mode): texts of --split")
    ap.add_argument("--split", default="test", choices=sorted(SPLIT_ALIASES), help="split of --texts-csv")
    ap.add_argument("--text-only", action="store_true", help="no audio/vision streams: SSU and the LM read text only")
    ap.add_argument("--json", type=Path, help="write the latency records as JSON here")
    args = ap.parse_args()
    args.split = SPLIT_ALIASES[args.split]
    if not args.llm and not args.arch:
        args.llm = [SMOLLM2]
    return args


def ssu_base_config(args) -> dict:
    """SSUConfig fields from the params file's `model` section, the MOSI widths and the overrides."""
    import yaml

    fields = {f.name for f in dataclasses.fields(SSUConfig)}
    base = {k: v for k, v in (yaml.safe_load(args.params.read_text()).get("model") or {}).items() if k in fields}
    base.update(text_dim=384, audio_dim=None if args.text_only else 5, vision_dim=None if args.text_only else 20)
    base.update({k: v for k, v in (("max_nodes", args.max_nodes), ("hidden", args.hidden)) if v is not None})
    base["num_relations"] = max(int(base.get("num_relations", 64)), 46)  # the default spaCy model: 45 labels
    return base


def ssu_side(args, ids, texts, st, base, rng) -> tuple[LatencySides, Any, list[list[str]], list, int]:
    """(the SSU side of the clocks, its raw-text input, the words, the records, the text encoder's
    parameters): from raw text (spaCy + all-MiniLM-L6-v2, warmed up) or, ``--no-raw-text``, random
    records and no raw-text input."""
    dev = args.device
    if args.no_raw_text:
        words = [t.split() for t in texts]
        recs = synthetic_records(words, st, rng)
        ssu = SSU(SSUConfig(**base)).to(dev).eval()
        sides = LatencySides(ssu=ssu, constructor=None, ssu_llm=None, ssu_repeats=0,
                             graphs_repeats=args.graphs_repeats, device=dev)
        return sides, None, words, recs, 0
    from ssu_model import raw_text
    from ssu_model.data.utterances import Utterances
    from ssu_model.text.parse_table import ParseConfig
    from ssu_model.text.pretrained import MINILM, encoder_folder
    from ssu_model.text.text_encoder import TextEncoder

    config = ParseConfig(tokenizer=encoder_folder(MINILM, ROOT / ".cache" / "encoders"))
    encoder = TextEncoder(None, max_length=config.max_length).to(dev).eval().requires_grad_(False)
    utts = Utterances(ids, texts, np.zeros(args.batch, np.float32), streams=st)
    table, labels = raw_text.parse_texts(texts, ids, config)  # the "cache": words for the LLM side
    words = table.column("words").to_pylist()
    ssu = SSU(SSUConfig(**{**base, "num_relations": max(base["num_relations"], len(labels) + 1)})).to(dev).eval()
    sides = LatencySides(ssu=ssu, constructor=None, ssu_llm=None, parse_config=config, text_encoder=encoder,
                         dep_labels=labels, encoder_batch_size=args.encoder_batch, ssu_repeats=args.ssu_repeats,
                         graphs_repeats=args.graphs_repeats, device=dev)
    _steps, recs = sides.ssu_call(utts)  # warm-up: loads spaCy, the tokenizer, the encoder's kernels
    return sides, utts, words, recs, count_params(encoder.model)


def time_llm(kind: str, what: str, args, sides: LatencySides, raw_utts, llm_utts, recs, base, rng,
             te_params: int, inputs: dict) -> tuple[str, dict, ConstructorConfig]:
    """(the record's name, the latency record, the constructor config) of one LLM: ``args.repeats``
    timed batches side by side with SSU (``--no-raw-text``: graphs-only clocks)."""
    dev = args.device
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}[args.precision]
    t0 = time.perf_counter()
    if kind == "path":
        model = load_causal_lm(what, args.precision, dev)
        tok = load_llm_tokenizer(what)
    else:
        model, tok = random_arch(what, dtype, dev)
    load_s = time.perf_counter() - t0
    ssu = sides.ssu
    cfg = ConstructorConfig(max_nodes=ssu.config.max_nodes, llm_max_nodes=args.llm_max_nodes or None, prompt=args.prompt)
    con = LLMGraphConstructor(model, tok, cfg, device=dev)
    if not args.text_only:  # text only: no stream enters the LM, no projection
        con.fit_projections({"audio": rng.normal(size=(500, 5)), "vision": rng.normal(size=(500, 20))})
    ssu_llm = SSU(SSUConfig(**{**base, "num_relations": ssu.config.num_relations}, graph_source="llm",
                            llm_dim=con.dim)).to(dev).eval()
    sides = dataclasses.replace(sides, constructor=con, ssu_llm=ssu_llm)
    sides.llm_call(llm_utts, recs)  # warm-up
    runs = LatencyRuns()
    for _ in range(args.repeats):
        timed_batch(sides, runs, llm_utts, recs, raw_utts)
    name = f"{what} ({args.precision}{', random weights' if kind == 'arch' else ''})"
    params = {"SSU": {"ssu": count_params(ssu), "text_encoder": te_params},
              name: {"llm": count_params(model), "input_projections": con.projection_params,
                     "ssu_llm_mode": count_params(ssu_llm), "text_encoder": te_params}}
    if raw_utts is not None:
        record = latency_report(name, runs.ssu_raw, runs.ssu_graphs, runs.llm, batch_size=args.batch,
                                batch_sizes=runs.batch_sizes, threads=torch.get_num_threads(), params=params,
                                load_seconds=load_s, llm_tokens_per_stream=0 if args.text_only else cfg.llm_nodes,
                                inputs=inputs)
    else:
        llm_s = median([sum(r.values()) for r in runs.llm])
        g_s = median([median(g) for g in runs.ssu_graphs])
        record = {"llm_from_raw_text": {"what": LATENCY_WHAT["llm_from_raw_text"], "seconds_median": llm_s},
                  "ssu_graphs_only_cached_inputs": {"what": "SSU.build_graphs alone on random word states "
                                                    "(no parse, no encoder)", "seconds_median": g_s},
                  "ratio_graphs_only": llm_s / g_s, "params": params, "load_seconds": load_s, "inputs": inputs}
    return name, record, cfg


def describe_inputs(args, texts: dict[str, Any], words) -> dict[str, Any]:
    """What the batch is (for the report and every JSON record)."""
    return {**texts, "batch_size": args.batch, "words_mean": sum(len(w) for w in words) / len(words),
            "text_only": bool(args.text_only),
            "streams": "none (text only)" if args.text_only else f"random audio 5 / vision 20 dims, {args.steps} steps"}


def print_report(args, reports: dict, inputs: dict, ssu, cfg: ConstructorConfig) -> str:
    """The markdown table of every record and the step medians; returns the device description."""
    dev = args.device
    raw = not args.no_raw_text
    where = torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    src = (f"{inputs['source']} split {inputs['split']}, first {args.batch} in id order" if "split" in inputs
           else f"{inputs['source']} (sample templates)")
    modal = ("text only (no audio/vision)" if args.text_only
             else f"{args.steps} audio/vision steps, LM reads {cfg.llm_nodes} steps/stream")
    print(f"texts: {src}; batch {args.batch} utterances ({inputs['words_mean']:.1f} words on average); {modal}")
    print(f"device: {where}; SSU hidden {ssu.config.hidden}, max_nodes "
          f"{ssu.config.max_nodes}; {args.repeats} timed batches (LLM: 1 call each; SSU from raw text: "
          + (f"{args.ssu_repeats} calls each, median" if raw else "not timed (--no-raw-text)")
          + f"; graphs only: {args.graphs_repeats} calls each, median); medians over the timed batches")
    clocks = ("ssu_from_raw_text", "ssu_from_raw_text_no_encoder", "ssu_graphs_only_cached_inputs", "llm_from_raw_text")
    print("| LLM | " + " | ".join(f"{c} s" for c in clocks) + " | ratio_from_raw_text (headline) "
          "| ratio_graphs_only (breakdown) | LLM params |")
    print("|---|" + "---:|" * (len(clocks) + 3))
    for name, rec in reports.items():
        cells = [f"{rec[c]['seconds_median']:.4g}" if c in rec else "n/a" for c in clocks]
        headline = f"{rec['ratio_from_raw_text']:.1f}x" if "ratio_from_raw_text" in rec else "n/a (--no-raw-text)"
        print(f"| {name} | " + " | ".join(cells) + f" | {headline} | {rec['ratio_graphs_only']:.0f}x "
              f"| {rec['params'][name]['llm'] / 1e6:.1f}M |")
    for name, rec in reports.items():
        if "ssu_from_raw_text" in rec:
            steps = rec["ssu_from_raw_text"]["steps_seconds_median"]
            print("\nSSU from raw text, step medians (s): " + ", ".join(f"{k} {v:.4f}" for k, v in steps.items()))
            steps = rec["llm_from_raw_text"]["steps_seconds_median"]
            print(f"{name}, step medians (s): " + ", ".join(f"{k} {v:.4f}" for k, v in steps.items()))
            break
    return where


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    ids, texts, source = batch_texts(args)
    st = streams(args.batch, args.steps, rng, args.text_only)
    base = ssu_base_config(args)
    sides, raw_utts, words, recs, te_params = ssu_side(args, ids, texts, st, base, rng)
    inputs = describe_inputs(args, source, words)
    llm_utts = [Utterance(i, t, w, stream_of(st, "audio", k), stream_of(st, "vision", k))
                for k, (i, t, w) in enumerate(zip(ids, texts, words, strict=True))]
    reports = {}
    for kind, what in [("path", p) for p in args.llm] + [("arch", a) for a in args.arch]:
        name, reports[name], cfg = time_llm(kind, what, args, sides, raw_utts, llm_utts, recs, base, rng, te_params,
                                            inputs)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    where = print_report(args, reports, inputs, sides.ssu, cfg)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = {"device": where, "inputs": inputs, "records": reports}
        args.json.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
