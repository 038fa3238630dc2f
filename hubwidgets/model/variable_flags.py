"""Trainable flags below the layer: single variables of a Hub module wrapper, and the
modules that can never train."""

from __future__ import annotations

from typing import Any

from .adapters.common import variable_key


def untrainable_reason(layer: Any) -> str | None:
    """Why a Hub layer can never train (TF1 Hub format, signature calls), else None."""
    name = type(layer).__name__
    if name not in ("KerasLayer", "HubLayer"):
        return None
    tf1 = getattr(layer, "_is_hub_module_v1", False) or getattr(layer, "tf1_format", False)
    signature = getattr(layer, "_signature", None) or getattr(layer, "signature", None)
    if tf1:
        return (f"the Hub layer {layer.name!r} loads a TF1 Hub format module, which cannot be "
                "fine-tuned in TF2 (its training graph and update ops are not loaded). Keep it "
                "frozen, or use the module's TF2 SavedModel version.")
    if signature:
        return (f"the Hub layer {layer.name!r} calls the SavedModel signature {signature!r}, "
                "which cannot be fine-tuned (no training mode, no update ops). Keep it frozen, "
                "or load the module without signature= to call its __call__.")
    return None


def set_variables_trainable(layer: Any, keys: set[int], flag: bool) -> None:
    """Freeze or unfreeze single variables of a Keras layer (keys from ``variable_key``)."""
    from .adapters.keras import KERAS3, keras_generation

    if keras_generation(layer) == KERAS3:
        for v in layer.weights:
            if variable_key(v) in keys:
                v.trainable = flag
        return
    trainable, frozen = layer._trainable_weights, layer._non_trainable_weights  # noqa: SLF001
    # tf_keras saves (.keras, .h5) and get_weights() in the order trainable + non-trainable:
    # remember the layer's first order, so each list keeps it and a layer whose parts are
    # all unfrozen again saves exactly as before (while parts are frozen, the order differs).
    order = layer.__dict__.setdefault(ORIGINAL_ORDER, {id(v): i for i, v in
                                                       enumerate(trainable + frozen)})
    source, target = (frozen, trainable) if flag else (trainable, frozen)
    moving = [v for v in source if variable_key(v) in keys and (v.trainable or not flag)]
    moved = {id(v) for v in moving}
    source[:] = [v for v in source if id(v) not in moved]  # by identity: == is elementwise
    target[:] = sorted(target + moving, key=lambda v: order.get(id(v), len(order)))


ORIGINAL_ORDER = "_hubwidgets_weight_order"


def reset_module_variables(layer: Any) -> None:
    """A whole-module toggle clears part freezes (tf_keras; Keras 3's setter does it)."""
    from .adapters.keras import TF_KERAS, is_module_wrapper, keras_generation

    if is_module_wrapper(layer) and keras_generation(layer) == TF_KERAS:
        set_variables_trainable(layer, {variable_key(v) for v in layer.weights}, True)
