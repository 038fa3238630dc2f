"""Why a LoRA or quantized model's frozen weights stayed bit-identical through training:
the findings ``diff`` (and so ``watch``) adds to its audit."""

from __future__ import annotations

from typing import Any

from .adapters.common import variable_key
from .layer_kinds import is_integer_variable, lora_rank, quantization_mode
from .lora import lora_base_variable


def frozen_by_design(live: Any, results: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, reason) for each LoRA base kernel and each quantized integer code variable of
    the live model that did not change and is not trainable, in model order."""
    flatten = getattr(live, "_flatten_layers", None)
    if flatten is None:
        return []
    from .inspect import inspect

    layers = [layer for layer in flatten(include_self=True, recursive=True)
              if lora_rank(layer) is not None or quantization_mode(layer) is not None]
    if not layers:
        return []
    paths = {v.key: v.path for v in inspect(live).variables()}
    found: list[tuple[str, str]] = []
    for layer in layers:
        rank, mode = lora_rank(layer), quantization_mode(layer)
        base = lora_base_variable(layer)
        for v in layer.weights:
            path = paths.get(variable_key(v))
            d = results.get(path) if path is not None else None
            if d is None or d.changed or d.trainable:
                continue
            if base is not None and v is base:
                adapters = "/".join(w.name for w in layer.weights if "lora_" in w.name)
                found.append((path, f"the LoRA base kernel of {layer.name!r} (rank {rank}): "
                              "enable_lora froze it, and the adapters "
                              f"({adapters}) carry the update, W + (alpha/rank)·A·B; "
                              "unchanged bit for bit by design."))
            elif is_integer_variable(v):
                found.append((path, f"{mode} codes of the quantized layer {layer.name!r}: "
                              "integers, which no gradient changes; unchanged by design."))
    return found
