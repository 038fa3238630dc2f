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


def is_batch_norm(node: "Node") -> bool:
    """A BatchNormalization layer: a Keras class (or subclass) of that name, or a restored
    layer whose Keras metadata says so."""
    if node.keras_layer:
        return any(cls.__name__ == "BatchNormalization" for cls in type(node.obj).__mro__)
    return node.class_name == "BatchNormalization"


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
