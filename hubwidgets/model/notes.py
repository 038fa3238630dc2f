"""Notes computed from the live model each time a tree is refreshed (never patched by hand).

A note tells the user something the counts alone would hide: a frozen BatchNormalization
layer runs in inference mode; one inside a training Hub module still updates its moving
statistics, because a module takes a single ``training`` flag.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
