"""Trainable changes that training really follows: ``freeze``, ``unfreeze``, ``set_trainable``.

Rules (the same for Keras 3 and tf_keras):

- Setting a layer's flag sets it on every layer below it too (Keras 3 does this itself;
  tf_keras does not, so we do), so a nested model freezes or unfreezes as a whole.
- Unfreezing a layer inside a frozen parent unfreezes the parents and re-freezes the
  parents' other children, so exactly the asked-for subtree becomes trainable.
- Part of a Hub module (a node inside ``hubwidgets.HubLayer``, ``hub.KerasLayer`` or
  ``TFSMLayer``) is frozen variable by variable: Keras 3 keeps a ``trainable`` flag on each
  variable, tf_keras keeps a layer's trainable and non-trainable weight lists.  A restored
  ``tf.Variable``'s own flag cannot change, so this is the only way training skips part of a
  module.  Unfreezing a part of a frozen module makes exactly that part trainable.
- TF1 Hub format modules and signature-calling layers cannot be fine-tuned: asking to
  unfreeze one raises :class:`FreezeError`; unfreezing a parent leaves it frozen, with a
  warning.
- Keras reads ``trainable`` when the training function is built: a model compiled before the
  change needs ``compile()`` again (in Keras 3 with a new optimizer when more variables
  train).  :func:`needs_compile` detects it.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Iterable

from .adapters.common import variable_key
from .adapters.keras import FROZEN_BN_NOTE, MODULE_BN_NOTE, note_frozen_module_batchnorm
from .compile_state import mark_variable_change, needs_compile
from .errors import FreezeError
from .inspect import inspect
from .tree import ModelTree, Node, VariableInfo
from .variable_flags import (outside_trainable_set_reason, reset_module_variables,
                             set_variables_trainable, untrainable_reason)


def set_trainable(model: Any, path: str, flag: bool) -> ModelTree:
    """Make the layer at ``path`` (and everything below it) trainable or frozen."""
    if not isinstance(flag, bool):
        raise TypeError(f"flag must be True or False, got {flag!r}.")
    tree = inspect(model)
    _apply(tree, [tree.find(path)], flag)
    return tree.refresh()


def freeze(model: Any, *paths_or_patterns: str) -> ModelTree:
    """Freeze the whole model, or the layers named by paths, names or regular expressions."""
    return _change(model, paths_or_patterns, False)


def unfreeze(model: Any, *paths_or_patterns: str) -> ModelTree:
    """Unfreeze the whole model, or the layers named by paths, names or regular expressions."""
    return _change(model, paths_or_patterns, True)


def freeze_up_to(model: Any, path: str, include: bool = True) -> ModelTree:
    """Freeze every top-level layer before ``path`` (and ``path`` itself when ``include``),
    in model order, and unfreeze the ones after it: the transfer-learning split."""
    tree = inspect(model)
    target = tree.find(path)
    top = _top_level_ancestor(tree, target)
    siblings = tree.root.children
    cut = siblings.index(top) + (1 if include else 0)
    _apply(tree, siblings[:cut], False)
    _apply(tree, siblings[cut:], True)
    return tree.refresh()


def matching_nodes(tree: ModelTree, paths_or_patterns: Iterable[str]) -> list[Node]:
    """Nodes named by each entry: an exact path or name, else a regular expression searched
    in paths and class names, else variables (by path, or a regular expression searched in
    their paths and TF names, so ``"embedding/"`` picks a name scope).  A variable comes back
    as a one-variable node.  Raises ``KeyError`` for an entry that matches nothing."""
    found: list[Node] = []
    for entry in paths_or_patterns:
        try:
            found.append(tree.find(entry))
            continue
        except KeyError as exc:
            miss = exc
        try:
            pattern = re.compile(entry)
        except re.error:
            raise miss from None
        hits = [n for n in tree if n is not tree.root
                and (pattern.search(n.path) or pattern.fullmatch(n.class_name))]
        if not hits:
            hits = [_variable_node(tree, v) for v in tree.variables()
                    if v.path == entry or pattern.search(v.path)
                    or pattern.search(str(getattr(v.variable, "name", "")))]
        if not hits:
            raise miss
        found += _outermost(hits)
    return found


def _variable_node(tree: ModelTree, var: VariableInfo) -> Node:
    """A node standing for one variable, so a variable can be frozen like a layer."""
    return Node(name=var.name, path=var.path, class_name="Variable", variables=[var],
                _tree=tree)


def python_code(tree: ModelTree, nodes: list[Node], flag: bool, var: str = "model") -> str:
    """The plain Keras code with the same effect, for teaching material."""
    lines = []
    for node in nodes:
        if not _is_keras_layer(node.obj):
            lines.append(f"hubwidgets.set_trainable({var}, {node.path!r}, {flag})"
                         "  # part of a Hub module: per-variable flags")
            continue
        if node is tree.root:
            lines.append(f"{var}.trainable = {flag}")
            continue
        chain = node.path.split("/")[1:]
        getter = var + "".join(f".get_layer({name!r})" for name in chain)
        lines.append(f"{getter}.trainable = {flag}")
    if needs_compile(tree):
        lines.append(f"{var}.compile(...)  # again, with a new optimizer: Keras applies "
                     "trainable changes at compile()")
    return "\n".join(lines)


# -- internals ----------------------------------------------------------------------------
def _change(model: Any, entries: tuple[str, ...], flag: bool) -> ModelTree:
    tree = inspect(model)
    nodes = [tree.root] if not entries else matching_nodes(tree, entries)
    _apply(tree, nodes, flag)
    return tree.refresh()


def _apply(tree: ModelTree, nodes: list[Node], flag: bool) -> None:
    owners = [_owner_for_change(tree, node, flag) for node in nodes]  # check all, then act
    for node, owner in zip(nodes, owners):
        if owner is node:
            if flag:
                _unfreeze_ancestors(tree, node)
            _set_subtree(node, flag)
        else:
            _set_module_part(tree, owner, node, flag)


def _owner_for_change(tree: ModelTree, node: Node, flag: bool) -> Node:
    """The Keras layer whose state changes for ``node``: the node itself, or the module
    wrapper holding it.  Raises :class:`FreezeError` for what cannot change."""
    owner = node if _is_keras_layer(node.obj) else _keras_owner(tree, node)
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
    reason = untrainable_reason(owner.obj) if flag else None
    if reason:
        raise FreezeError(f"Cannot unfreeze {what}: {reason}")
    if owner is not node and flag and not any(v.can_train for v in node.all_variables()):
        raise FreezeError(
            f"Cannot unfreeze {what}: {outside_trainable_set_reason(owner.obj, what)}")
    return owner


def _set_module_part(tree: ModelTree, owner: Node, node: Node, flag: bool) -> None:
    keys = {v.key for v in node.all_variables() if v.can_train or not flag}
    if flag:
        was_frozen = _effectively_frozen(tree, owner)
        _unfreeze_ancestors(tree, owner)
        if was_frozen:  # the module trains again, but only the asked-for part
            _set_subtree(owner, True)
            others = {v.key for v in owner.all_variables()} - keys
            set_variables_trainable(owner.obj, others, False)
    set_variables_trainable(owner.obj, keys, flag)
    mark_variable_change(tree)
    tree.refresh()
    note_frozen_module_batchnorm(owner, tree.trainable_keys, bool(owner.obj.trainable))


def _effectively_frozen(tree: ModelTree, node: Node) -> bool:
    return any(not getattr(n.obj, "trainable", True) for n in _chain(tree, node) + [node])


def _keras_owner(tree: ModelTree, node: Node) -> Node | None:
    """The nearest ancestor of ``node`` that is a Keras layer."""
    return next((n for n in reversed(_chain(tree, node)) if _is_keras_layer(n.obj)), None)


def _is_keras_layer(obj: Any) -> bool:
    from .adapters.keras import keras_generation

    return keras_generation(obj) is not None


def _set_subtree(node: Node, flag: bool) -> None:
    from .adapters.keras import direct_sublayers

    stack = [node.obj]
    while stack:
        layer = stack.pop()
        reason = untrainable_reason(layer) if flag else None
        if reason:
            layer.trainable = False
            warnings.warn(f"Left frozen: {reason}", stacklevel=4)
            continue
        layer.trainable = flag
        reset_module_variables(layer)
        stack.extend(direct_sublayers(layer))
    for sub in node.walk():
        if sub.layer_trainable is not None:
            sub.layer_trainable = bool(getattr(sub.obj, "trainable", flag))
        sub.notes = [n for n in sub.notes if n not in (FROZEN_BN_NOTE, MODULE_BN_NOTE)]
        if sub.class_name == "BatchNormalization" and not flag:
            sub.notes.append(FROZEN_BN_NOTE)


def _chain(tree: ModelTree, node: Node) -> list[Node]:
    """The ancestors of ``node``, from the root down."""
    chain: list[Node] = []
    current: Node | None = tree.root
    while current is not None and current is not node and current.path != node.path:
        chain.append(current)
        current = next((c for c in current.children
                        if (node.path + "/").startswith(c.path + "/")), None)
    return chain


def _unfreeze_ancestors(tree: ModelTree, node: Node) -> None:
    """Make every ancestor trainable, keeping the children off the path as they were."""
    chain = _chain(tree, node)
    frozen, effective = [], False
    for parent in chain:  # tf_keras leaves children's flags alone: freezing is inherited
        effective = effective or not getattr(parent.obj, "trainable", True)
        frozen.append(effective)
    for parent, on_path, was_frozen in zip(chain, chain[1:] + [node], frozen):
        if not was_frozen:
            continue
        parent.obj.trainable = True  # Keras 3 passes this down to every child ...
        parent.layer_trainable = True
        for child in parent.children:  # ... so the children off the path are frozen again
            if child is not on_path:
                _set_subtree(child, False)


def _top_level_ancestor(tree: ModelTree, node: Node) -> Node:
    for child in tree.root.children:
        if (node.path + "/").startswith(child.path + "/"):
            return child
    raise FreezeError(f"{node.path!r} is the model itself; pick one of its layers.")


def _outermost(nodes: list[Node]) -> list[Node]:
    """Drop nodes that lie inside another node of the list."""
    paths = [n.path for n in nodes]
    return [n for n in nodes if not any(n.path.startswith(p + "/") for p in paths if p != n.path)]
