"""The LLM graph constructor (paper section "SSU versus LLM-based Graph Constructors").

A frozen causal LM receives, per utterance, the text token embeddings of the utterance's
words (the parse's spaCy tokens, re-tokenised with the LLM tokenizer, word spans kept)
followed by the acoustic and visual steps mapped into the LLM embedding space. It runs once
per utterance (batched, right padding + attention mask; "offline prompting"), and the
hidden states of its penultimate layer (``hidden_states[-2]``) are kept per node: one state
per word (mean over the word's LLM tokens), one per temporal_pool'ed audio / vision step.
The SSU model (``graph_source="llm"``) turns them into adjacencies with learned linear
projections (contract C); everything downstream stays SSU's.

Top to bottom: ``ConstructorConfig`` and ``Utterance`` (what the constructor reads),
``word_pieces`` / ``pooled_index`` (where each node's state comes from),
``penultimate_states`` (the LM run up to its penultimate layer), ``ModalityProjection`` (how
audio/vision features enter the embedding space: per-feature standardisation fitted on the
train split, then a fixed seeded random semi-orthogonal map ``D -> d`` scaled so the projected
steps have the mean norm of the LM's token embeddings; recorded in ``meta.json``, not learned:
the LM is frozen and run offline) and ``LLMGraphConstructor``: utterances -> per-node
penultimate-layer states.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ssu_model.errors import DataError


@dataclass(frozen=True)
class ConstructorConfig:
    """What the LLM graph constructor builds; the defaults are the sample ``params.yaml``'s
    (``model.max_nodes``, the ``llm_graphs`` section, ``base.seeds[0]``).

    Args:
        max_nodes (`int`, defaults to 16): SSU's ``max_nodes``: the audio/vision node counts of
            the output (contract C/F).
        llm_max_nodes (`int | None`, defaults to 4): steps per audio/vision stream the LLM reads
            (None = ``max_nodes``); each SSU node takes the state of the LLM step that pooled it.
        max_text_tokens (`int`, defaults to 256): LLM tokens of the words at most; later words get
            zero states.
        prompt (`str`, defaults to ``"Sentiment:"``): text before the words (tokenised with the
            tokenizer's special tokens).
        audio_marker (`str`, defaults to ``" Audio:"``): tokens before the projected audio steps.
        vision_marker (`str`, defaults to ``" Video:"``): tokens before the projected visual steps.
        seed (`int`, defaults to 0): seeds the random projections.
    """

    max_nodes: int = 16
    llm_max_nodes: int | None = 4
    max_text_tokens: int = 256
    prompt: str = "Sentiment:"
    audio_marker: str = " Audio:"
    vision_marker: str = " Video:"
    seed: int = 0

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
        if dim < D:
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
                    # called within this iteration only: this utterance's parts
                    parts.append(emb_w(torch.tensor(tok, dtype=torch.long, device=dev)).to(self.dtype))  # noqa: B023
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


def config_dict(cfg: ConstructorConfig) -> dict[str, Any]:
    """The configuration as ``meta.json`` records it."""
    return dataclasses.asdict(cfg)
