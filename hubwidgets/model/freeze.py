"""Trainable changes that training really follows: ``freeze``, ``unfreeze``, ``set_trainable``.

Rules (the same for Keras 3 and tf_keras):

- Setting a layer's flag sets it on every layer below it too (Keras 3 does this itself;
  tf_keras does not, so we do), so a nested model freezes or unfreezes as a whole.
- Unfreezing a layer inside a frozen parent unfreezes the parents and re-freezes the
  parents' other children, so exactly the asked-for subtree becomes trainable.
- Keras reads ``trainable`` when the training function is built: a model compiled before the
  change needs ``compile()`` again.  :func:`needs_compile` detects it; the functions here
  return the updated :class:`ModelTree` whose ``needs_compile`` says so.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from .errors import FreezeError
from .inspect import inspect
from .tree import ModelTree, Node


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


def needs_compile(model: Any) -> bool:
    """True when ``model`` was compiled and a layer's ``trainable`` changed since."""
    obj = model.obj if isinstance(model, ModelTree) else model
    state = getattr(obj, "_compiled_trainable_state", None)
    if not getattr(obj, "compiled", getattr(obj, "_is_compiled", False)) or not state:
        return False
    return any(layer.trainable != was for layer, was in state.items())


def matching_nodes(tree: ModelTree, paths_or_patterns: Iterable[str]) -> list[Node]:
    """Nodes named by each entry: an exact path or name, else a regular expression searched
    in paths and class names.  Raises ``KeyError`` for an entry that matches nothing."""
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
            raise miss
        found += _outermost(hits)
    return found


def python_code(tree: ModelTree, nodes: list[Node], flag: bool, var: str = "model") -> str:
    """The plain Keras code with the same effect, for teaching material."""
    lines = []
    for node in nodes:
        if node is tree.root:
            lines.append(f"{var}.trainable = {flag}")
            continue
        chain = node.path.split("/")[1:]
        getter = var + "".join(f".get_layer({name!r})" for name in chain)
        lines.append(f"{getter}.trainable = {flag}")
    if needs_compile(tree):
        lines.append(f"{var}.compile(...)  # again: Keras applies trainable changes at compile()")
    return "\n".join(lines)


# -- internals ----------------------------------------------------------------------------
def _change(model: Any, entries: tuple[str, ...], flag: bool) -> ModelTree:
    tree = inspect(model)
    nodes = [tree.root] if not entries else matching_nodes(tree, entries)
    _apply(tree, nodes, flag)
    return tree.refresh()


def _apply(tree: ModelTree, nodes: list[Node], flag: bool) -> None:
    for node in nodes:
        _check_can_change(tree, node)
    for node in nodes:
        if flag:
            _unfreeze_ancestors(tree, node)
        _set_subtree(node, flag)


def _check_can_change(tree: ModelTree, node: Node) -> None:
    if _is_keras_layer(node.obj):
        return
    owner = _keras_owner(tree, node)
    what = f"{node.path!r} ({node.class_name})"
    if owner is not None and type(owner.obj).__name__ in ("KerasLayer", "TFSMLayer"):
        raise FreezeError(
            f"{what} is part of the Hub module {owner.path!r}; freezing part of a module is not "
            f"supported yet. Freeze or unfreeze the whole module: "
            f"hubwidgets.set_trainable(model, {owner.path!r}, False).")
    raise FreezeError(
        f"{what} is not a Keras layer, and a tf.Variable's trainable flag is fixed when it is "
        "created. Wrap the module in a Keras layer (hub.KerasLayer for tf_keras), or pick the "
        "variables to train yourself: [v for v in module.trainable_variables if ...].")


def _keras_owner(tree: ModelTree, node: Node) -> Node | None:
    owner = None
    for candidate in tree:
        if candidate.path and (node.path + "/").startswith(candidate.path + "/") \
                and _is_keras_layer(candidate.obj):
            owner = candidate
    return owner


def _is_keras_layer(obj: Any) -> bool:
    from .adapters.keras import keras_generation

    return keras_generation(obj) is not None


def _set_subtree(node: Node, flag: bool) -> None:
    from .adapters.keras import direct_sublayers

    stack = [node.obj]
    while stack:
        layer = stack.pop()
        layer.trainable = flag
        stack.extend(direct_sublayers(layer))
    for sub in node.walk():
        if sub.layer_trainable is not None:
            sub.layer_trainable = bool(getattr(sub.obj, "trainable", flag))
        sub.notes = [n for n in sub.notes if "BatchNormalization" not in n]
        if sub.class_name == "BatchNormalization" and not flag:
            sub.notes.append("frozen BatchNormalization runs in inference mode (uses its "
                             "moving mean and variance)")


def _unfreeze_ancestors(tree: ModelTree, node: Node) -> None:
    """Make every ancestor trainable, keeping the children off the path as they were."""
    chain: list[Node] = []
    current = tree.root
    while current is not node:
        chain.append(current)
        current = next(c for c in current.children
                       if (node.path + "/").startswith(c.path + "/"))
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
