"""What each built-in weight edit means on a LoRA or quantized layer (Keras 3): the pieces
of their :class:`~hubwidgets.model.edit_specs.FineTunedMeaning` (the machinery that applies
them is :mod:`hubwidgets.model.lora_edits`).

A LoRA layer computes with ``W + (alpha / rank) * A @ B``; a quantized one with codes and
scales (int8: ``codes / kernel_scale``).  Editing each variable alone would not do what the
edit's name says (scaling A and B by 2 scales the adapters' product by 4), so on these layers,
when the target is the layer (or a scope above it):

- ``scale_weights(f)`` scales the layer's output by ``f``: the base kernel, the B factor and
  the bias (never A), so ``x (W + s A B) f + b f``.  int8 codes stay as they are and the
  scale is divided by ``f`` (``codes / (scale / f) = f W``).  int4 and other modes are refused.
- ``reset_weights`` on a LoRA layer puts the B factor back to zeros (what ``enable_lora``
  starts with), so the layer computes with its base weights again; base, A and bias keep
  their values.  On a quantized layer without adapters it is refused: its codes and scales
  have no initializer.  Named alone, B goes back to zeros and A, scales and zero points are
  refused (no initializer).
- an edit with no meaning there (``prune_weights``, ``add_noise``, a new edit that gives
  none) is refused on the layer as a whole; naming one float variable edits exactly that.

Every function raises :class:`EditError` (nothing changed yet) where the edit has no meaning.
This module imports no other edit module.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .errors import EditError
from .layer_kinds import is_integer_variable, lora_rank, quantization_mode

Compute = Callable[[np.ndarray, Any], np.ndarray]
SCALE_NAMES = ("kernel_scale", "embeddings_scale")


def variable_name(var: Any) -> str:
    """The last part of a VariableInfo's variable path (``lora_kernel_b``, ``kernel``)."""
    return str(getattr(var.variable, "path", var.name)).rsplit("/", 1)[-1]


def layer_kind(owner: Any) -> str:
    """What makes the layer special, in words ("LoRA rank 4 and quantized int8")."""
    rank, mode = lora_rank(owner.obj), quantization_mode(owner.obj)
    return " and ".join(k for k in (f"LoRA rank {rank}" if rank else "",
                                    f"quantized {mode}" if mode else "") if k)


def _is_b(var: Any) -> bool:
    name = variable_name(var)
    return name.startswith("lora_") and name.endswith("_b")


def _is_a(var: Any) -> bool:
    name = variable_name(var)
    return name.startswith("lora_") and name.endswith("_a")


def _zeros(old: np.ndarray, _info: Any) -> np.ndarray:
    return np.zeros_like(old)  # what enable_lora gives the B factor


# -- scale_weights ---------------------------------------------------------------------------
def scale_layer(owner: Any, owned: list[Any], args: tuple[Any, ...], action: str,
                overrides: dict[int, Compute], dropped: set[int]) -> None:
    """``scale_weights`` on a layer as a whole: its output times the factor."""
    what = f"{owner.path!r} ({owner.class_name})"
    factor, mode = float(args[0]), quantization_mode(owner.obj)
    if mode == "int4":
        raise EditError(
            f"{action} on {what}: its kernel is int4 codes (int4 packs two per byte, "
            "with zero points per group), which hubwidgets does not rescale. Scale a float or "
            "int8 layer, or restore a snapshot; nothing changed.")
    if mode not in (None, "int8", "float8"):
        raise EditError(f"{action} on {what} ({mode}): hubwidgets does not know what "
                        "its variables mean; nothing changed.")
    for v in owned:
        name = variable_name(v)
        if _is_a(v):
            dropped.add(v.key)  # scaled through B: A·B scales once
        elif is_integer_variable(v.variable):
            dropped.add(v.key)  # the codes stay; their scale carries the factor
        elif mode == "float8" and (name.endswith("_scale") or name.endswith("amax_history")):
            dropped.add(v.key)  # float8 bookkeeping: Keras recomputes it from the kernel
        elif name in SCALE_NAMES and mode == "int8":
            if factor == 0:
                raise EditError(f"{action} by 0 on {what} would make its int8 scale "
                                "infinite; prune the layer's float weights instead; nothing "
                                "changed.")
            overrides[v.key] = _divide_by(factor)


def _divide_by(factor: float) -> Compute:
    def divided(old: np.ndarray, _info: Any) -> np.ndarray:
        return (old / np.asarray(factor, dtype=old.dtype)).astype(old.dtype)
    return divided


def scale_code(node: Any, args: tuple[Any, ...], getter: str) -> list[str]:
    """Plain Keras for ``scale_weights`` on one LoRA or quantized layer."""
    layer, f = node.obj, args[0]
    mode = quantization_mode(layer)
    base = "_kernel" if "_kernel" in layer.__dict__ else "_embeddings"
    names = ([] if mode == "int8" else [base]) + _b_factors(layer) + \
        [n for n in ("bias",) if getattr(layer, "bias", None) is not None]
    lines = [f"layer = {getter}",
             f"for w in ({', '.join('layer.' + n for n in names)},):"
             "  # output times the factor: not lora_*_a",
             f"    w.assign(w * {f!r})"]
    if mode == "int8":
        scale = "kernel_scale" if hasattr(layer, "kernel_scale") else "embeddings_scale"
        lines.append(f"layer.{scale}.assign(layer.{scale} / {f!r})  # int8: codes / scale")
    return lines


def _b_factors(layer: Any) -> list[str]:
    return [a for a in ("lora_kernel_b", "lora_embeddings_b") if hasattr(layer, a)]


# -- reset_weights ---------------------------------------------------------------------------
def reset_layer(owner: Any, owned: list[Any], args: tuple[Any, ...], action: str,
                overrides: dict[int, Compute], dropped: set[int]) -> None:
    """``reset_weights`` on a layer as a whole: a LoRA layer's B factor back to zeros."""
    what = f"{owner.path!r} ({owner.class_name})"
    rank, mode = lora_rank(owner.obj), quantization_mode(owner.obj)
    if rank is None and mode == "float8":
        raise EditError(
            f"{action} on {what}: the layer is quantized (float8), and its scales and "
            "amax histories are state Keras computes while training, with no "
            f"initializer. Reset its float kernel by naming it ({owner.path + '/kernel'!r}), "
            "or restore a snapshot; nothing changed.")
    if rank is None:
        raise EditError(
            f"{action} on {what}: the layer is quantized ({mode}), and its codes and "
            "scales have no initializer to draw from (they were computed from trained "
            "float weights). Restore a snapshot taken before instead; nothing changed.")
    b = next((v for v in owned if _is_b(v)), None)
    for v in owned:
        if v is not b:
            dropped.add(v.key)
    if b is not None:
        overrides[b.key] = _zeros


def reset_named(owner: Any, var: Any, overrides: dict[int, Compute]) -> None:
    """``reset_weights`` on one named variable of a LoRA or quantized layer."""
    name, mode = variable_name(var), quantization_mode(owner.obj)
    if _is_b(var):
        overrides[var.key] = _zeros
    elif _is_a(var):
        raise EditError(
            f"{var.path!r} is the A factor of a LoRA adapter: Keras draws it once in "
            "enable_lora and keeps no initializer for it. Reset the B factor (or the layer: "
            "B back to zeros gives the base weights); nothing changed.")
    elif mode is not None and (name in SCALE_NAMES or name.endswith(("_zero", "g_idx"))):
        raise EditError(
            f"{var.path!r} is part of the layer's {mode} quantization (computed from trained "
            "float weights when the layer was quantized): there is no initializer to draw it "
            "from. Restore a snapshot taken before instead; nothing changed.")


def reset_code(node: Any, _args: tuple[Any, ...], getter: str) -> list[str]:
    """Plain Keras for ``reset_weights`` on one LoRA layer."""
    return ["import numpy as np", f"layer = {getter}"] + [
        f"layer.{b}.assign(np.zeros(layer.{b}.shape, layer.{b}.dtype))"
        "  # LoRA: back to the base weights" for b in _b_factors(node.obj)]


# -- an edit with no meaning on such a layer -------------------------------------------------
def refuse_layer(owner: Any, action: str) -> None:
    """The refusal of an edit that gives no meaning on a LoRA or quantized layer as a whole."""
    has_lora = lora_rank(owner.obj) is not None
    computes = " and ".join(
        (["W + (alpha/rank)·A·B"] if has_lora else [])
        + (["integer codes times a scale"] if quantization_mode(owner.obj) is not None else []))
    floats = [v.path for v in owner.all_variables() if not is_integer_variable(v.variable)]
    example = (f"e.g. {owner.path + '/lora_kernel_b'!r}" if has_lora
               else f"e.g. {floats[0]!r}" if floats else "if it has one")
    raise EditError(
        f"{action} on {owner.path!r} ({owner.class_name}; {layer_kind(owner)}) has no honest "
        f"meaning for the layer as a whole: it computes with {computes or 'its weights'}, and "
        f"{action} of each variable alone is not {action} of that. Name one float variable "
        f"instead ({example}); nothing changed.")
