"""What a Keras 3 layer is, for fine-tuning: its LoRA rank and its quantization mode, read
from the live layer.  No imports: the tree, the notes and :mod:`.lora` all read these."""

from __future__ import annotations

import math

from typing import Any

INTEGER_DTYPES = frozenset({"int4", "int8", "uint8", "int16", "uint4"})
# the attribute holding the weight a quantized (or LoRA) layer computes with, per kind
BASE_ATTRS = ("_kernel", "_embeddings")


def lora_rank(layer: Any) -> int | None:
    """The rank of the layer's LoRA adapters, None when it has none."""
    if not getattr(layer, "lora_enabled", False):
        return None
    rank = getattr(layer, "lora_rank", None)
    return int(rank) if isinstance(rank, int) else None


def quantization_mode(layer: Any) -> str | None:
    """Keras' ``quantization_mode`` of a layer that holds quantized weights ("int8", "int4",
    "float8", "gptq", ...), None for the others (containers report None too)."""
    try:
        mode = getattr(layer, "quantization_mode", None)
    except Exception:  # noqa: BLE001 - a layer without a dtype policy
        return None
    return mode if isinstance(mode, str) and mode else None


def dtype_text(v: Any) -> str:
    """A variable's dtype as text (``int8``)."""
    dtype = getattr(v, "dtype", "")
    return str(getattr(dtype, "name", dtype))


def is_integer_variable(v: Any) -> bool:
    """Whether ``v`` holds integer codes (a quantized kernel, an int4 zero point)."""
    return dtype_text(v) in INTEGER_DTYPES


def base_weight(layer: Any) -> Any | None:
    """The variable a Dense / EinsumDense (``_kernel``) or Embedding (``_embeddings``)
    computes with: float, or the integer codes of a quantized layer."""
    for attr in BASE_ATTRS:
        v = getattr(layer, "__dict__", {}).get(attr)
        if v is not None and hasattr(v, "shape"):
            return v
    return None


def logical_weight_count(layer: Any) -> int | None:
    """How many weights the quantized layer's kernel stands for (int4 packs two per byte,
    so its stored elements are about half), None when the layer is not quantized."""
    mode = quantization_mode(layer)
    base = base_weight(layer)
    if mode is None or base is None:
        return None
    stored = math.prod(int(d) for d in base.shape)
    if mode != "int4":
        return stored
    original = getattr(layer, "original_kernel_shape", None)  # EinsumDense
    if original is not None:
        return math.prod(int(d) for d in original)
    rows = int(base.shape[0]) if len(base.shape) else 1
    unpacked = getattr(layer, "_orig_output_dim", None)  # Dense, Embedding
    return rows * int(unpacked) if unpacked else 2 * stored


def quantization_summary(layer: Any) -> str | None:
    """``4,096 weights in 2,048 bytes (int4)``: the kernel's logical weights and the bytes its
    codes take, None when the layer is not quantized."""
    count = logical_weight_count(layer)
    base = base_weight(layer)
    if count is None or base is None:
        return None
    stored = math.prod(int(d) for d in base.shape)
    itemsize = {"int8": 1, "uint8": 1, "int16": 2, "float16": 2, "bfloat16": 2,
                "float32": 4, "float64": 8}.get(dtype_text(base), 0)
    mode = quantization_mode(layer)
    return f"{count:,} weights in {stored * itemsize:,} bytes ({mode})"


def task_preprocessor(layer: Any, subs: list[Any]) -> Any | None:
    """A KerasHub Task's preprocessor (``task.preprocessor``), which Keras keeps outside the
    model's layers (``Task.summary()`` shows it apart), else None."""
    if not hasattr(type(layer), "preprocessor"):
        return None
    try:
        pre = layer.preprocessor
    except Exception:  # noqa: BLE001 - a property that cannot answer
        return None
    if pre is None or any(pre is s for s in subs) or not is_preprocessing(pre):
        return None
    return pre


def preprocessing_notes(layer: Any) -> list[str]:
    """What a KerasHub preprocessor or tokenizer says about itself: vocabulary size,
    sequence length; it runs on the inputs before the model and holds no parameters."""
    facts = []
    size = getattr(layer, "vocabulary_size", None)
    try:
        size = size() if callable(size) else size
    except Exception:  # noqa: BLE001 - a tokenizer without a vocabulary yet
        size = None
    if isinstance(size, int):
        facts.append(f"vocabulary size {size:,}")
    length = getattr(layer, "sequence_length", None)
    if isinstance(length, int):
        facts.append(f"sequence length {length:,}")
    kind = "tokenizer" if "Tokenizer" in [c.__name__ for c in type(layer).__mro__] \
        else "preprocessor"
    text = f"{kind}: " + (", ".join(facts) + "; " if facts else "")
    return [text + "runs on the inputs before the model, no params"]


def is_preprocessing(layer: Any) -> bool:
    """A KerasHub preprocessing layer (a Task's preprocessor, a tokenizer)."""
    return any(c.__name__ == "PreprocessingLayer" for c in type(layer).__mro__)
