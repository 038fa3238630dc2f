"""Trainable flags below the layer: single variables of a Hub module wrapper, and the
modules that can never train."""

from __future__ import annotations

from typing import Any

from .adapters.common import variable_key
from .adapters.keras import (HUB_KERAS_LAYER, HUB_LAYER, KERAS3, TF_KERAS,
                             is_module_wrapper, keras_generation, module_trainable_keys,
                             wrapped_module_attr)
from .errors import FreezeError
from .layer_bookkeeping import LayerBook
from .layer_kinds import is_integer_variable
from .notes import BN_STATISTIC_NAMES



def untrainable_reason(layer: Any) -> str | None:
    """Why a Hub layer can never train (TF1 Hub format, signature calls, a Keras 3 export
    whose ``serve`` endpoint uses no variable of its trainable set), else None."""
    if wrapped_module_attr(layer) not in (HUB_KERAS_LAYER, HUB_LAYER):
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
    if getattr(layer, "endpoint", None) == "serve" and not module_trainable_keys(layer):
        return (f"the Hub layer {layer.name!r} calls the 'serve' endpoint of a Keras 3 export "
                "that uses no trainable variable (the model was exported with its layers "
                "frozen, or its trainable_variables list is empty), so fine-tuning would change "
                "nothing. Keep it frozen, or export the model again with the layers to "
                "fine-tune trainable (set layer.trainable = True before model.export(path)), "
                "or load its .keras file with keras.saving.load_model and fine-tune that.")
    return None


def why_not_trained(var: Any) -> str:
    """Why a variable that no optimizer step changes (``VariableInfo.can_train`` False) never
    trains: a BatchNormalization moving statistic, a variable left out of its Hub module's
    trainable_variables list, or one created with ``trainable=False``.  '' for the others."""
    if getattr(var, "can_train", True):
        return ""
    if getattr(var, "name", "") in BN_STATISTIC_NAMES:
        return ("a BatchNormalization moving statistic: the forward pass in training mode "
                "updates it, gradients never do (freezing the layer keeps it: a frozen "
                "BatchNormalization runs in inference mode; so does calling the layer with "
                "training=False)")
    live = getattr(var, "variable", None)
    if is_integer_variable(live):
        return ("integer codes of a quantized layer (int8; int4 packs two per byte): no "
                "gradient changes an integer, so they never train (LoRA adapters train on top)")
    if str(getattr(var, "name", "")).endswith(("_scale", "_zero", "g_idx")) and live is not None \
            and str(getattr(live, "path", "")).rsplit("/", 1)[-1] in (
                "kernel_scale", "embeddings_scale", "kernel_zero", "embeddings_zero", "g_idx"):
        return ("part of a layer's quantization (a scale, zero point or group index): fixed "
                "when the layer was quantized, no gradient changes it")
    if getattr(live, "trainable", False):
        return ("left out of its Hub module's trainable_variables list (the module was saved "
                "with it frozen): fine-tuning the Hub layer never changes it")
    return ("created with trainable=False (a counter, a seed, a statistic): no optimizer step "
            "changes it")


HUB_KERAS_LAYER_SOURCE = "the module's trainable_variables list"
HUB_KERAS_LAYER_NO_LIST = ("the module has no trainable_variables list, so hub.KerasLayer "
                           "trains none of its variables")


def trainable_set_source(layer: Any) -> str:
    """Where a Hub layer's trainable set comes from, for messages."""
    source = getattr(layer, "trainable_source", None)
    if isinstance(source, str):
        return source
    module = getattr(layer, HUB_KERAS_LAYER, None)
    return HUB_KERAS_LAYER_SOURCE if hasattr(module, "trainable_variables") \
        else HUB_KERAS_LAYER_NO_LIST


def outside_trainable_set_reason(layer: Any, what: str) -> str:
    """Why ``what`` (a part of the module wrapped by ``layer``) cannot be unfrozen: none of its
    variables can train."""
    if module_trainable_keys(layer) is not None:
        return (f"none of the variables of {what} is in the trainable set of the Hub layer "
                f"{layer.name!r} ({trainable_set_source(layer)}): the module was saved with them "
                "frozen (a frozen sub-layer, BatchNormalization statistics), so fine-tuning "
                "cannot update them. Unfreeze another part, or save the module again with them "
                "trainable.")
    return (f"none of the variables of {what} can train (each was created non-trainable, "
            f"e.g. BatchNormalization's moving statistics); the Keras layer {layer.name!r} "
            "keeps them frozen. Unfreeze another part.")


def set_variables_trainable(layer: Any, keys: set[int], flag: bool,
                            book: LayerBook | None = None) -> None:
    """Freeze or unfreeze single variables of a Keras layer (keys from ``variable_key``).
    ``book``: the model session's layer notes, where a tf_keras layer's first weight order
    is kept (None: only for this call)."""

    allowed = module_trainable_keys(layer)
    if flag and allowed is not None and not keys <= allowed:
        outside = [v.name for v in layer.weights if variable_key(v) in keys - allowed]
        raise FreezeError(
            f"Cannot make {outside} of the Hub layer {layer.name!r} trainable: they are not in "
            f"its module's trainable set ({trainable_set_source(layer)}), so training would not "
            "follow the module. Unfreeze only variables of that set.")
    if keras_generation(layer) == KERAS3:
        for v in layer.weights:
            if variable_key(v) in keys:
                v.trainable = flag
        return
    trainable, frozen = layer._trainable_weights, layer._non_trainable_weights  # noqa: SLF001
    # tf_keras saves (.keras, .h5) and get_weights() in the order trainable + non-trainable:
    # remember the layer's first order, so each list keeps it and a layer whose parts are
    # all unfrozen again saves exactly as before (while parts are frozen, the order differs).
    notes = (book if book is not None else LayerBook()).of(layer)
    if notes.weight_order is None:
        notes.weight_order = {id(v): i for i, v in enumerate(trainable + frozen)}
    order = notes.weight_order
    source, target = (frozen, trainable) if flag else (trainable, frozen)
    moving = [v for v in source if variable_key(v) in keys and (v.trainable or not flag)]
    moved = {id(v) for v in moving}
    source[:] = [v for v in source if id(v) not in moved]  # by identity: == is elementwise
    target[:] = sorted(target + moving, key=lambda v: order.get(id(v), len(order)))


def reset_module_variables(layer: Any, book: LayerBook | None = None) -> None:
    """A whole-module toggle clears part freezes.  tf_keras: every variable back in the
    trainable list.  Keras 3: its setter does it, but TensorFlow's attribute tracking skips
    the setter when the flag does not change (``layer.trainable = True`` on a trainable
    layer), so the flag goes to the layer's trainable-at-creation variables here."""

    if not is_module_wrapper(layer):
        return
    generation = keras_generation(layer)
    if generation == TF_KERAS:  # within the module's trainable set, as hub.KerasLayer built it
        keys = {variable_key(v) for v in layer.weights}
        allowed = module_trainable_keys(layer)
        set_variables_trainable(layer, keys if allowed is None else keys & allowed, True, book)
    elif generation == KERAS3:
        for v in getattr(layer, "_trainable_variables", ()):
            v.trainable = bool(layer.trainable)
