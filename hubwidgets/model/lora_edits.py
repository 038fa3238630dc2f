"""What a weight edit means on a LoRA or quantized layer (Keras 3).

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
  have no initializer.
- ``prune_weights`` and ``add_noise`` on the layer as a whole are refused (pruning W, A and B
  one by one does not prune ``W + s A B``; integer codes cannot take noise); naming one float
  variable (``.../lora_kernel_b``, a float base kernel) edits exactly that tensor.

Integer codes named alone are refused with the reason.  Every refusal changes nothing.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .edit_targets import variable_owners
from .errors import EditError
from .layer_kinds import is_integer_variable, lora_rank, quantization_mode

Compute = Callable[[np.ndarray, Any], np.ndarray]
SCALE_NAMES = ("kernel_scale", "embeddings_scale")


def _name(var: Any) -> str:
    return str(getattr(var.variable, "path", var.name)).rsplit("/", 1)[-1]


def special_layer(node: Any) -> bool:
    """Whether ``node`` is a Keras layer with LoRA adapters or quantized weights."""
    return bool(node is not None and node.keras_layer
                and (lora_rank(node.obj) is not None or quantization_mode(node.obj) is not None))


def fine_tuning_plan(tree: Any, action: str, nodes: list[Any], variables: list[Any],
                     compute: Compute, args: tuple[Any, ...]) -> tuple[list[Any], Compute]:
    """The variables an edit writes and what it computes for each, with LoRA and quantized
    layers given the meaning above; raises :class:`EditError` (nothing changed) where the
    edit has none.  Other variables are left to ``compute``."""
    owners = variable_owners(tree)
    named = {v.key for n in nodes if n.class_name == "Variable" for v in n.variables}
    special = {}
    for var in variables:
        owner = owners.get(var.key)
        if special_layer(owner):
            special.setdefault(id(owner), (owner, []))[1].append(var)
    if not special:
        return variables, compute
    overrides: dict[int, Compute] = {}
    dropped: set[int] = set()
    for owner, owned in special.values():
        explicit = [v for v in owned if v.key in named]
        for var in explicit:
            if is_integer_variable(var.variable):
                raise EditError(
                    f"{var.path!r} holds the {quantization_mode(owner.obj)} codes of a quantized "
                    f"layer: integers, which {action} cannot change honestly (a code is not a "
                    "weight: the layer computes with codes / scale). Edit the layer as a whole "
                    "(scale_weights scales its scale), or restore a snapshot; nothing changed.")
            if action == "reset_weights":
                _plan_named_reset(owner, var, overrides)
        implicit = [v for v in owned if v.key not in named]
        if implicit:
            _plan_layer(owner, action, implicit, args, overrides, dropped)
    kept = [v for v in variables if v.key not in dropped]

    def planned(old: np.ndarray, info: Any) -> np.ndarray:
        return overrides.get(info.key, compute)(old, info)
    return kept, planned


def _plan_named_reset(owner: Any, var: Any, overrides: dict[int, Compute]) -> None:
    """``reset_weights`` on one named variable of a LoRA or quantized layer."""
    name, mode = _name(var), quantization_mode(owner.obj)
    if name.startswith("lora_") and name.endswith("_b"):
        overrides[var.key] = lambda old, _info: np.zeros_like(old)  # what enable_lora set
    elif name.startswith("lora_") and name.endswith("_a"):
        raise EditError(
            f"{var.path!r} is the A factor of a LoRA adapter: Keras draws it once in "
            "enable_lora and keeps no initializer for it. Reset the B factor (or the layer: "
            "B back to zeros gives the base weights); nothing changed.")
    elif mode is not None and (name in SCALE_NAMES or name.endswith(("_zero", "g_idx"))):
        raise EditError(
            f"{var.path!r} is part of the layer's {mode} quantization (computed from trained "
            "float weights when the layer was quantized): there is no initializer to draw it "
            "from. Restore a snapshot taken before instead; nothing changed.")


def _plan_layer(owner: Any, action: str, owned: list[Any], args: tuple[Any, ...],
                overrides: dict[int, Compute], dropped: set[int]) -> None:
    layer, what = owner.obj, f"{owner.path!r} ({owner.class_name})"
    rank, mode = lora_rank(layer), quantization_mode(layer)
    kind = " and ".join(k for k in (f"LoRA rank {rank}" if rank else "",
                                    f"quantized {mode}" if mode else "") if k)
    if action in ("prune_weights", "add_noise"):
        raise EditError(
            f"{action} on {what} ({kind}) has no honest meaning for the layer as a whole: it "
            "computes with W + (alpha/rank)·A·B and/or integer codes times a scale, and editing "
            "each variable alone would not " + ("prune" if action == "prune_weights" else
                                                 "add noise to") +
            " that. Name one float variable instead (e.g. "
            f"{owner.path + '/lora_kernel_b'!r} or a float base kernel); nothing changed.")
    if action == "reset_weights":
        if rank is None and mode == "float8":
            raise EditError(
                f"reset_weights on {what}: the layer is quantized (float8), and its scales and "
                "amax histories are state Keras computes while training, with no "
                f"initializer. Reset its float kernel by naming it ({owner.path + '/kernel'!r}), "
                "or restore a snapshot; nothing changed.")
        if rank is None:
            raise EditError(
                f"reset_weights on {what}: the layer is quantized ({mode}), and its codes and "
                "scales have no initializer to draw from (they were computed from trained "
                "float weights). Restore a snapshot taken before instead; nothing changed.")
        b = next((v for v in owned if _name(v).startswith("lora_") and _name(v).endswith("_b")),
                 None)
        for v in owned:
            if v is not b:
                dropped.add(v.key)
        if b is not None:
            overrides[b.key] = lambda old, _info: np.zeros_like(old)
        return
    if action != "scale_weights":
        return
    factor = float(args[0])
    if mode == "int4":
        raise EditError(
            f"scale_weights on {what}: its kernel is int4 codes (int4 packs two per byte, "
            "with zero points per group), which hubwidgets does not rescale. Scale a float or "
            "int8 layer, or restore a snapshot; nothing changed.")
    if mode not in (None, "int8", "float8"):
        raise EditError(f"scale_weights on {what} ({mode}): hubwidgets does not know what "
                        "its variables mean; nothing changed.")
    for v in owned:
        name = _name(v)
        if name.startswith("lora_") and name.endswith("_a"):
            dropped.add(v.key)  # scaled through B: A·B scales once
        elif is_integer_variable(v.variable):
            dropped.add(v.key)  # the codes stay; their scale carries the factor
        elif mode == "float8" and (name.endswith("_scale") or name.endswith("amax_history")):
            dropped.add(v.key)  # float8 bookkeeping: Keras recomputes it from the kernel
        elif name in SCALE_NAMES and mode == "int8":
            if factor == 0:
                raise EditError(f"scale_weights by 0 on {what} would make its int8 scale "
                                "infinite; prune the layer's float weights instead; nothing "
                                "changed.")
            overrides[v.key] = _divide_by(factor)


def _divide_by(factor: float) -> Compute:
    def divided(old: np.ndarray, _info: Any) -> np.ndarray:
        return (old / np.asarray(factor, dtype=old.dtype)).astype(old.dtype)
    return divided


def plan_note(tree: Any, action: str, target: str) -> str:
    """What the edit did on LoRA and quantized layers, for the message ('' when none)."""
    from .matching import matching_nodes

    try:
        nodes = matching_nodes(tree, [target])
    except KeyError:
        return ""
    layers = [n for top in nodes if top.class_name != "Variable" for n in top.walk()
              if special_layer(n)]
    if not layers:
        return ""
    names = ", ".join(n.name for n in layers[:4]) + (", ..." if len(layers) > 4 else "")
    if action == "scale_weights":
        return (f"On {len(layers)} LoRA/quantized layer(s) ({names}) the output is scaled: base "
                "kernel, lora_*_b and bias times the factor (not lora_*_a); int8 codes kept, "
                "their scale divided by it.")
    if action == "reset_weights":
        return (f"On {len(layers)} LoRA layer(s) ({names}) only lora_*_b went back to zeros: "
                "the layer computes with its base weights again.")
    return ""


def plan_code_lines(node: Any, action: str, args: tuple[Any, ...], getter: str) -> list[str]:
    """Plain Keras for the edit on one LoRA or quantized layer (``getter`` reaches it)."""
    layer = node.obj
    lines = [f"layer = {getter}"]
    factors = [a for a in ("lora_kernel_b", "lora_embeddings_b") if hasattr(layer, a)]
    if action == "reset_weights":
        return ["import numpy as np"] + lines + [
            f"layer.{b}.assign(np.zeros(layer.{b}.shape, layer.{b}.dtype))"
            "  # LoRA: back to the base weights" for b in factors]
    f = args[0]
    mode = quantization_mode(layer)
    base = "_kernel" if "_kernel" in layer.__dict__ else "_embeddings"
    names = ([] if mode == "int8" else [base]) + factors + \
        [n for n in ("bias",) if getattr(layer, "bias", None) is not None]
    lines.append(f"for w in ({', '.join('layer.' + n for n in names)},):"
                 "  # output times the factor: not lora_*_a")
    lines.append(f"    w.assign(w * {f!r})")
    if mode == "int8":
        scale = "kernel_scale" if hasattr(layer, "kernel_scale") else "embeddings_scale"
        lines.append(f"layer.{scale}.assign(layer.{scale} / {f!r})  # int8: codes / scale")
    return lines
