"""Graph-construction time per batch: SSU vs LLM graph constructors, side by side.

Same machine, same batch of ``--batch`` synthetic MOSI-shaped utterances (real English words,
A5/V20 streams of ``--steps`` steps), warm (one untimed call first), median of ``--repeats``.

- SSU: ``SSU.build_graphs`` of a random-initialised model (time does not depend on weight
  values); optionally also the frozen text encoder forward (``--with-text-encoder``).
- LLM: input building (word tokens, fixed projections of the audio/vision steps) + LM forward
  to the penultimate layer + word pooling + ``SSU(graph_source="llm").build_graphs``.

LLMs: ``--llm PATH`` (a HF folder, a .gguf file, or ``smollm2`` = the shipped GGUF) and/or
``--arch NAME`` (random weights from a built-in config: smollm2-135m, gemma-2b, mistral-7b,
qwen2.5-7b, llama-3.1-8b; the paper's constructors). Random weights are fine for timing and make
the GPU run possible without carrying weights (a lent GPU image has no gguf package).

    python benchmarks/bench_llm_latency.py --llm models/pretrained/smollm2 --repeats 3
    python benchmarks/bench_llm_latency.py --device cuda --precision bf16 --arch smollm2-135m --arch gemma-2b \
        --arch mistral-7b --arch qwen2.5-7b --arch llama-3.1-8b --llm-max-nodes 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssu_model import llm_graphs as lg  # noqa: E402
from ssu_model.batching import UtteranceRecord, collate  # noqa: E402
from ssu_model.model import SSU, SSUConfig  # noqa: E402

WORDS = ("i really liked this movie but the ending was not good at all and honestly the acting "
         "is great though the plot feels weak so overall it is fine").split()

# Public architecture sizes (config.json of each model); random weights are used.
ARCHS = {
    "smollm2-135m": ("llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                   num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                                   tie_word_embeddings=True)),
    "gemma-2b": ("gemma", dict(hidden_size=2048, intermediate_size=16384, num_hidden_layers=18,
                               num_attention_heads=8, num_key_value_heads=1, head_dim=256, vocab_size=256000)),
    "mistral-7b": ("mistral", dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                   num_attention_heads=32, num_key_value_heads=8, vocab_size=32000)),
    "qwen2.5-7b": ("qwen2", dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                 num_attention_heads=28, num_key_value_heads=4, vocab_size=152064)),
    "llama-3.1-8b": ("llama", dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                   num_attention_heads=32, num_key_value_heads=8, vocab_size=128256)),
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


def synthetic_batch(n: int, steps: int, rng):
    utts, recs = [], []
    for i in range(n):
        k = int(rng.integers(6, 20))
        words = [WORDS[j] for j in rng.integers(0, len(WORDS), k)]
        audio = rng.normal(size=(steps, 5)).astype(np.float32)
        vision = rng.normal(size=(steps, 20)).astype(np.float32)
        utts.append(lg.Utterance(str(i), " ".join(words), words, audio, vision))
        heads = np.array([max(j - 1, 0) for j in range(k)])
        recs.append(UtteranceRecord(rng.normal(size=(k, 384)).astype(np.float32), heads,
                                    list(rng.integers(1, 40, k)), audio, vision, 0.0))
    return utts, recs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llm", action="append", default=[], help="LM folder / .gguf / smollm2 (repeatable)")
    ap.add_argument("--arch", action="append", default=[], choices=sorted(ARCHS), help="random-weight architecture")
    ap.add_argument("--precision", default="fp32", choices=lg.PRECISIONS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50, help="audio/vision steps per utterance (MOSI aligned: 50)")
    ap.add_argument("--max-nodes", type=int, default=64, help="SSU max_nodes")
    ap.add_argument("--llm-max-nodes", type=int, default=8, help="steps per stream the LM reads (0 = max_nodes)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ssu-repeats", type=int, default=20)
    ap.add_argument("--with-text-encoder", action="store_true", help="also time SSU incl. the MiniLM forward")
    ap.add_argument("--json", type=Path, help="write the rows as JSON here")
    args = ap.parse_args()
    if not args.llm and not args.arch:
        args.llm = [lg.SMOLLM2]
    dev = args.device
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    utts, recs = synthetic_batch(args.batch, args.steps, rng)
    batch = collate(recs).to(dev)
    base = dict(text_dim=384, audio_dim=5, vision_dim=20, max_nodes=args.max_nodes)
    ssu = SSU(SSUConfig(**base)).to(dev).eval()
    with torch.inference_mode():
        ssu_s = lg.time_call(lambda: ssu.build_graphs(batch), args.ssu_repeats, 2, dev)
    te_params = 0
    rows = []
    try:
        from ssu_model.text_encoder import TextEncoder

        te = TextEncoder().to(dev).eval()
        te_params = lg.count_params(te.model)
    except Exception as exc:  # noqa: BLE001 - the GPU image may lack the packaged encoder
        te = None
        print(f"(text encoder not available: {exc}; SSU params exclude it)", file=sys.stderr)
    ssu_params = lg.count_params(ssu) + te_params
    rows.append({"constructor": "SSU build_graphs", "seconds": lg.median(ssu_s), "params": ssu_params})
    if args.with_text_encoder and te is not None:
        from ssu_model.text_encoder import collate_encoded

        enc = [te.encode(u.words) for u in utts]
        ids, mask, pool = (t.to(dev) for t in collate_encoded(enc, te.pad_id))

        def ssu_full():
            te(ids, mask, pool)
            ssu.build_graphs(batch)

        with torch.inference_mode():
            rows.append({"constructor": "SSU + text encoder", "seconds": lg.median(lg.time_call(ssu_full, args.ssu_repeats, 2, dev)),
                         "params": ssu_params})

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}[args.precision]
    llm_nodes = args.llm_max_nodes or None
    todo = [("path", p) for p in args.llm] + [("arch", a) for a in args.arch]
    for kind, what in todo:
        t0 = time.perf_counter()
        if kind == "path":
            model = lg.load_causal_lm(what, args.precision, dev)
            tok = lg.load_tokenizer(what)
        else:
            model, tok = random_arch(what, dtype, dev)
        load_s = time.perf_counter() - t0
        cfg = lg.ConstructorConfig(max_nodes=args.max_nodes, llm_max_nodes=llm_nodes,
                                   prompt="Judge the speaker's sentiment. Transcript:")
        con = lg.LLMGraphConstructor(model, tok, cfg, device=dev)
        con.fit_projections({"audio": rng.normal(size=(500, 5)), "vision": rng.normal(size=(500, 20))})
        states = con.encode(utts)
        recs_llm = [UtteranceRecord(r.word_states, r.heads, r.deps, r.audio, r.vision, 0.0, llm_states=s)
                    for r, s in zip(recs, states)]
        llm_batch = collate(recs_llm).to(dev)
        ssu_llm = SSU(SSUConfig(**base, graph_source="llm", llm_dim=con.dim)).to(dev).eval()

        def construct():
            con.encode(utts)
            ssu_llm.build_graphs(llm_batch)

        with torch.inference_mode():
            secs = lg.time_call(construct, args.repeats, 1, dev)
        params = lg.count_params(model) + con.projection_params + lg.count_params(ssu_llm) + te_params
        rows.append({"constructor": f"{what} ({args.precision}{', random weights' if kind == 'arch' else ''})",
                     "seconds": lg.median(secs), "params": params, "load_s": load_s,
                     "llm_params": lg.count_params(model)})
        del model, con
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()

    ref = rows[0]["seconds"]
    gpu = torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {gpu}; batch {args.batch} utterances, {args.steps} audio/vision steps, "
          f"LM reads {cfg.llm_nodes} steps/stream; median of {args.repeats} (LLM) / {args.ssu_repeats} (SSU)")
    print(f"| constructor | s / batch | params | SSU build_graphs faster by |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['constructor']} | {r['seconds']:.4g} | {r['params'] / 1e6:.1f}M | {r['seconds'] / ref:.0f}x |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": gpu, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
