"""Notes computed from the live model each time a tree is refreshed (never patched by hand).

A note tells the user something the counts alone would hide: a frozen BatchNormalization
layer runs in inference mode; one inside a training Hub module still updates its moving
statistics, because a module takes a single ``training`` flag.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .layer_kinds import (base_weight, dtype_text, is_integer_variable, lora_rank,
                          quantization_mode, quantization_summary)

if TYPE_CHECKING:
    from .tree import Node

FROZEN_BN_NOTE = ("frozen BatchNormalization runs in inference mode (uses its moving mean and "
                  "variance)")
MODULE_BN_NOTE = ("frozen, but inside a training module: it still runs in training mode and "
                  "updates its moving mean and variance")
# what BatchNormalization layers (Keras 3, tf_keras; ``moving_stddev``: renormalisation)
# name the statistics their forward pass updates in training mode
BN_STATISTIC_NAMES = ("moving_mean", "moving_variance", "moving_stddev")
# Class names of BatchNormalization layers in Keras 3 (``synchronized=True`` keeps the class)
# and tf_keras (whose ``SyncBatchNormalization`` and v1 layer share ``BatchNormalizationBase``)
BN_CLASS_NAMES = frozenset({"BatchNormalization", "BatchNormalizationBase",
                            "SyncBatchNormalization", "BatchNormalizationV1",
                            "BatchNormalizationV2"})


def is_batch_norm_class(class_name: str) -> bool:
    """Whether ``class_name`` names a BatchNormalization class (plain, synchronized, v1/v2):
    the one test behind the tree's notes and ``diff``'s audit."""
    return class_name in BN_CLASS_NAMES


def is_batch_norm(node: "Node") -> bool:
    """A BatchNormalization layer: a Keras class (or subclass) of a BatchNormalization
    class, or a restored layer whose Keras metadata says so."""
    if node.keras_layer:
        return any(is_batch_norm_class(cls.__name__) for cls in type(node.obj).__mro__)
    return is_batch_norm_class(node.class_name)


def live_notes(node: "Node") -> list[str]:
    """The notes that follow from the model's current state."""
    return _batch_norm_notes(node) + fine_tuning_notes(node)


def fine_tuning_notes(node: "Node") -> list[str]:
    """What a LoRA or quantized layer trains, and what it cannot (read from the live layer)."""
    if not node.keras_layer:
        return []
    layer, notes = node.obj, []
    rank = lora_rank(layer)
    if rank is not None:
        adapters = [v for v in layer.weights if "lora_" in str(getattr(v, "path", v.name))]
        size = sum(int(_size(v)) for v in adapters)
        trains = bool(getattr(base_weight(layer), "trainable", False))
        notes.append(
            f"LoRA rank {rank} (alpha {getattr(layer, 'lora_alpha', rank)}): the adapters "
            f"({', '.join(_short(v) for v in adapters)}; {size:,} params) train; "
            + ("the base kernel trains too (you unfroze it by name)" if trains else
               "the base kernel stays frozen, whatever a layer toggle says"))
    mode = quantization_mode(layer)
    if mode is not None:
        summary = quantization_summary(layer)
        codes = [v for v in layer.weights if is_integer_variable(v)]
        if codes:
            notes.append(
                f"quantized {mode}: {summary}; the integer codes "
                f"({', '.join(_short(v) + ' ' + dtype_text(v) for v in codes)}) and their "
                "scales cannot train: no gradient changes an integer (train LoRA adapters "
                "on top: hubwidgets.enable_lora)")
        else:
            notes.append(
                f"quantized {mode}: the kernel is stored in float and cast to {mode} in every "
                "call, with scales kept in *_scale and *_amax_history (Keras overwrites them "
                "each step, not the optimizer)")
    return notes


def _short(v) -> str:  # noqa: ANN001 - a Keras variable
    return str(getattr(v, "name", "")).rsplit("/", 1)[-1]


def _size(v) -> int:  # noqa: ANN001 - a Keras variable
    size = 1
    for d in v.shape:
        size *= int(d)
    return size


def _batch_norm_notes(node: "Node") -> list[str]:
    if not is_batch_norm(node):
        return []
    if node.keras_layer:
        return [FROZEN_BN_NOTE] if node.layer_trainable is False else []
    module = next((n for n in reversed(node.ancestors()) if n.module_wrapper), None)
    if module is None or not getattr(module.obj, "trainable", False):
        return []
    tree = node.tree
    keys = tree.trainable_keys if tree is not None else frozenset()
    states = [v.key in keys for v in node.variables if v.can_train]
    return [MODULE_BN_NOTE] if states and not any(states) else []
