"""What a Keras 3 layer is, for fine-tuning: its LoRA rank and its quantization mode, read
from the live layer.  No imports: the tree, the notes and :mod:`.lora` all read these."""

from __future__ import annotations

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
    stored = 1
    for d in base.shape:
        stored *= int(d)
    if mode != "int4":
        return stored
    original = getattr(layer, "original_kernel_shape", None)  # EinsumDense
    if original is not None:
        count = 1
        for d in original:
            count *= int(d)
        return count
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
    stored = 1
    for d in base.shape:
        stored *= int(d)
    itemsize = {"int8": 1, "uint8": 1, "int16": 2, "float16": 2, "bfloat16": 2,
                "float32": 4, "float64": 8}.get(dtype_text(base), 0)
    mode = quantization_mode(layer)
    return f"{count:,} weights in {stored * itemsize:,} bytes ({mode})"
