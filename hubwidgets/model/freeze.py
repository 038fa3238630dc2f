"""Trainable changes that training really follows: ``freeze``, ``unfreeze``, ``set_trainable``.

Rules (the same for Keras 3 and tf_keras):

- Setting a layer's flag sets it on every layer below it too (Keras 3 does this itself;
  tf_keras does not, so we do), so a nested model freezes or unfreezes as a whole.  It also
  resets every per-variable flag below it: after ``unfreeze(model)`` every variable that can
  train does, after ``freeze(model)`` none does.
- Unfreezing a layer inside a frozen parent unfreezes the parents and re-freezes the
  parents' other children, so exactly the asked-for subtree becomes trainable.
- Part of a Hub module (a node inside ``hubwidgets.HubLayer``, ``hub.KerasLayer`` or
  ``TFSMLayer``), or a single variable of a Keras 3 layer, is frozen variable by variable:
  Keras 3 keeps a ``trainable`` flag on each variable, tf_keras keeps a layer's trainable and
  non-trainable weight lists.  An ordinary tf_keras layer is frozen whole: moving one of its
  variables between those lists would change the order its weights are saved in (``.h5``).
- ``hub.KerasLayer`` and ``HubLayer`` train only their module's trainable set (its
  ``trainable_variables`` list; see :func:`variable_flags.module_trainable_keys`), whatever
  each variable's own flag says.  Unfreezing a variable outside it (a sub-layer saved frozen,
  restored with ``trainable=True``) raises :class:`FreezeError` and changes nothing;
  unfreezing the whole layer trains exactly the set.
- TF1 Hub format modules and signature-calling layers cannot be fine-tuned: asking to
  unfreeze one raises :class:`FreezeError`; unfreezing a parent leaves it frozen, with a
  warning.
- Keras reads ``trainable`` when the training function is built: a model compiled before the
  change needs ``compile()`` again (in Keras 3 with a new optimizer when more variables
  train).  :func:`needs_compile` detects it.

Every change tells the model's open views (:meth:`hubwidgets.model.session.ModelSession.update`).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from .adapters.common import variable_key
from .adapters.keras import KERAS3, direct_sublayers, is_module_wrapper
from .adapters.registry import keras_generation
from .compile_state import mark_variable_change, needs_compile
from .errors import FreezeError, HubWidgetsWarning
from .inspect import inspect
from .lora import (forget_before_freeze, keep_lora_bases_frozen, keras3_flags, put_back_flags,
                   quantized_reason,
                   remember_before_freeze, remember_named_base, restore_after_unfreeze,
                   still_frozen_whole)
from .matching import check_entries, matching_nodes, node_of_variable, outermost
from .layer_bookkeeping import LayerBook
from .session import existing_session, layer_book
from .tree import ModelTree, Node
from .variable_flags import (outside_trainable_set_reason, reset_module_variables,
                             set_variables_trainable, untrainable_reason)

# matching_nodes and outermost live in matching.py (the one matcher) and are exported here too
__all__ = ["set_trainable", "freeze", "unfreeze", "freeze_up_to", "matching_nodes",
           "needs_compile", "top_level_index", "outermost"]


def set_trainable(model: Any, path: str, flag: bool) -> ModelTree:
    """Make the layer at ``path`` (and everything below it) trainable or frozen."""
    if not isinstance(flag, bool):
        raise TypeError(f"flag must be True or False, got {flag!r}.")
    tree = _live_tree(model, "set_trainable")
    check_entries([path])
    _apply(tree, [tree.find(path)], flag)
    return _done(tree)


def freeze(model: Any, *paths_or_patterns: str) -> ModelTree:
    """Freeze the whole model, or the layers named by paths, names or regular expressions."""
    return _change(model, paths_or_patterns, False, "freeze")


def unfreeze(model: Any, *paths_or_patterns: str) -> ModelTree:
    """Unfreeze the whole model, or the layers named by paths, names or regular expressions."""
    return _change(model, paths_or_patterns, True, "unfreeze")


def freeze_up_to(model: Any, path: str, include: bool = True) -> ModelTree:
    """Freeze every top-level layer before ``path`` (and ``path`` itself when ``include``),
    in model order, and unfreeze the ones after it: the transfer-learning split.

    ``path`` may name a variable: its layer is used."""
    if not isinstance(include, bool):
        raise TypeError(f"include must be True or False, got {include!r}.")
    tree = _live_tree(model, "freeze_up_to")
    check_entries([path])
    cut = top_level_index(tree, path) + (1 if include else 0)
    siblings = list(tree.root.children)
    _apply(tree, siblings[:cut], False)
    _apply(tree, siblings[cut:], True)
    return _done(tree)


def top_level_index(tree: ModelTree, path: str) -> int:
    """The index among the root's children of the top-level layer holding ``path`` (a node
    or a variable path)."""
    try:
        node = tree.find(path)
    except KeyError as missing_layer:
        try:
            node = node_of_variable(tree, path)
        except KeyError:
            raise missing_layer from None  # a layer was most likely meant: say so
    chain = [*node.ancestors(), node]
    if len(chain) < 2 or chain[0] is not tree.root:
        raise FreezeError(f"{node.path!r} is the model itself; pick one of its layers.")
    return list(tree.root.children).index(chain[1])


# -- internals ----------------------------------------------------------------------------
def _live_tree(model: Any, action: str) -> ModelTree:
    if isinstance(model, (str, os.PathLike)):
        raise FreezeError(
            f"hubwidgets.{action} changes a live model, and {os.fspath(model)!r} is a path: "
            "what it would change is a throwaway copy. Load the model first, e.g. "
            "model = keras.saving.load_model(path), then call "
            f"hubwidgets.{action}(model, ...) and save it again.")
    return inspect(model)


def _change(model: Any, entries: tuple[Any, ...], flag: bool, action: str) -> ModelTree:
    tree = _live_tree(model, action)
    nodes = [tree.root] if not entries else matching_nodes(tree, entries)
    _apply(tree, nodes, flag)
    return _done(tree)


def _done(tree: ModelTree) -> ModelTree:
    session = existing_session(tree.obj)
    if session is not None and session.tree is tree:  # checked by _live_tree: not again
        return session.update("flags", structure_checked=True)
    tree.refresh()
    if session is not None:
        session.update("flags")
    return tree


def _apply(tree: ModelTree, nodes: list[Node], flag: bool) -> None:
    owners = [_owner_for_change(node, flag) for node in nodes]  # check all, then act
    book = layer_book(tree)
    for node, owner in zip(nodes, owners, strict=True):
        if owner is node:
            keras3 = keras_generation(node.obj) == KERAS3
            restore = flag and keras3 and still_frozen_whole(node.obj)
            if not flag and keras3:  # a scope with LoRA adapters: kept for the unfreeze
                remember_before_freeze(book, node.obj)
            elif flag and keras3 and not restore:
                forget_before_freeze(book, node.obj)
            if flag:
                _unfreeze_ancestors(node, book)
            _set_subtree(node.obj, flag, book)
            if restore:
                restore_after_unfreeze(book, node.obj)
        else:
            _set_part(tree, owner, node, flag, book)
        if keras_generation(tree.obj) == KERAS3:  # Keras' trainable = True unfroze them
            keep_lora_bases_frozen(tree.obj, book)
        tree.refresh()


def _owner_for_change(node: Node, flag: bool) -> Node:
    """The Keras layer whose state changes for ``node``: the node itself, or the layer
    holding it.  Raises :class:`FreezeError` for what cannot change."""
    owner = node if node.keras_layer else _keras_owner(node)
    what = f"{node.path!r} ({node.class_name})"
    if owner is None:
        raise FreezeError(
            f"{what} is not a Keras layer, and a tf.Variable's trainable flag is fixed when it "
            "is created. Wrap the module in a Keras layer (hubwidgets.HubLayer for Keras 3, "
            "hub.KerasLayer for tf_keras), or pick the variables to train yourself: "
            "[v for v in module.trainable_variables if ...].")
    if owner is not node:
        keys = {v.key for v in node.all_variables()}
        held = {variable_key(v) for v in owner.obj.weights}
        if not keys or not keys <= held:
            raise FreezeError(
                f"{what} has no variables that the Keras layer {owner.path!r} trains; "
                f"freeze or unfreeze {owner.path!r} as a whole.")
        if keras_generation(owner.obj) != KERAS3 and not is_module_wrapper(owner.obj):
            raise FreezeError(
                f"{what} is one variable of the tf_keras layer {owner.path!r}, and tf_keras "
                "trains whole layers: freezing one of its variables would change the order "
                "its weights are saved in (.h5 files would no longer load). Freeze the layer "
                f"{owner.path!r} instead.")
    reason = untrainable_reason(owner.obj) if flag else None
    if reason:
        raise FreezeError(f"Cannot unfreeze {what}: {reason}")
    if owner is not node and flag and not any(v.can_train for v in node.all_variables()):
        quantized = next((r for r in (quantized_reason(owner.obj, v.variable)
                                      for v in node.all_variables()) if r), None)
        if quantized:
            raise FreezeError(f"Cannot unfreeze {what}: {quantized}.")
        raise FreezeError(
            f"Cannot unfreeze {what}: {outside_trainable_set_reason(owner.obj, what)}")
    return owner


def _set_part(tree: ModelTree, owner: Node, node: Node, flag: bool, book: LayerBook) -> None:
    keys = {v.key for v in node.all_variables() if v.can_train or not flag}
    if flag:
        was_frozen = _effectively_frozen(owner)
        _unfreeze_ancestors(owner, book)
        if was_frozen:  # the layer trains again, but only the asked-for part
            _set_subtree(owner.obj, True, book)
            others = {v.key for v in owner.all_variables()} - keys
            set_variables_trainable(owner.obj, others, False, book)
    set_variables_trainable(owner.obj, keys, flag, book)
    if node.class_name == "Variable":  # named: a LoRA base kernel follows the user's word
        remember_named_base(book, owner.obj, keys, flag)
    mark_variable_change(tree)


def _effectively_frozen(node: Node) -> bool:
    return any(n.layer_trainable is False for n in [*node.ancestors(), node])


def _keras_owner(node: Node) -> Node | None:
    """The nearest ancestor of ``node`` that is a Keras layer."""
    return next((n for n in reversed(node.ancestors()) if n.keras_layer), None)


def _set_subtree(root_layer: Any, flag: bool, book: LayerBook) -> None:
    """Set ``trainable`` on ``root_layer`` and every layer below it, and reset every
    per-variable flag there (Keras 3 skips its own reset when the flag is unchanged)."""
    stack = [root_layer]
    seen: set[int] = set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        reason = untrainable_reason(layer) if flag else None
        if reason:
            layer.trainable = False
            warnings.warn(f"Left frozen: {reason}", HubWidgetsWarning, stacklevel=4)
            continue
        layer.trainable = flag
        if keras_generation(layer) == KERAS3:
            for v in getattr(layer, "_trainable_variables", ()):  # the ones that can train
                v.trainable = flag
        reset_module_variables(layer, book)
        stack.extend(direct_sublayers(layer))


def _unfreeze_ancestors(node: Node, book: LayerBook) -> None:
    """Make every ancestor trainable, keeping the children off the path as they were."""
    chain = node.ancestors()
    frozen, effective = [], False
    for parent in chain:  # tf_keras leaves children's flags alone: freezing is inherited
        effective = effective or parent.layer_trainable is False
        frozen.append(effective)
    steps = [(parent, [c for c in parent.children if c is not on_path and c.keras_layer])
             for parent, on_path, was_frozen in zip(chain, [*chain[1:], node], frozen,
                                                    strict=False)
             if was_frozen and parent.keras_layer]
    # Keras 3 trains a variable whose own flag is on, whatever its parents' flags say (after
    # backbone.enable_lora the adapters train inside frozen blocks): the children off the
    # path keep exactly the flags they had, read before any parent changes
    kept = [keras3_flags(child.obj) for parent, off_path in steps
            if keras_generation(parent.obj) == KERAS3 for child in off_path]
    for parent, off_path in steps:
        parent.obj.trainable = True  # Keras 3 passes this down to every child
        if keras_generation(parent.obj) != KERAS3:  # tf_keras: the others are frozen again
            for child in off_path:
                _set_subtree(child.obj, False, book)
    for flags in kept:
        put_back_flags(flags)
