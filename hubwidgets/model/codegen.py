"""The Python each action stands for: one place that writes it, for clicks and calls alike.

The code is plain Keras where Keras can say it (``model.get_layer('d').trainable = False``)
and a ``hubwidgets`` call where it cannot (part of a Hub module).  A layer whose name repeats
among its siblings is reached by position (``model.layers[2]``), never by its ambiguous name.
"""

from __future__ import annotations


from .compile_state import needs_compile
from .tree import ModelTree, Node


def layer_accessor(node: Node, var: str = "model") -> str:
    """An expression that evaluates to ``node``'s layer, starting from the model ``var``
    (plain Keras where it can say it, else a ``hubwidgets`` look-up)."""
    plain = plain_layer_accessor(node, var)
    return plain if plain is not None else f"hubwidgets.inspect({var}).find({node.path!r}).obj"


def plain_layer_accessor(node: Node, var: str = "model") -> str | None:
    """Plain Keras that reaches ``node``'s layer from the model ``var`` (``get_layer`` where
    the name is unique among its siblings, ``.layers[i]`` where it repeats), else None."""
    chain = [*node.ancestors(), node]
    if not all(n.keras_layer for n in chain):
        return None
    expr = var
    for parent, child in zip(chain, chain[1:]):
        step = _step(parent, child)
        if step is None:
            return None
        expr += step
    return expr


def _step(parent: Node, child: Node) -> str | None:
    siblings = [c.obj for c in parent.children]
    same_name = sum(1 for s in siblings if getattr(s, "name", None) == child.name)
    layers = getattr(parent.obj, "layers", None)
    if hasattr(parent.obj, "get_layer") and same_name == 1:
        return f".get_layer({child.name!r})"
    if isinstance(layers, list):
        index = next((i for i, layer in enumerate(layers) if layer is child.obj), None)
        if index is not None:
            return f".layers[{index}]"
    for attr, value in vars(parent.obj).items():  # a sub-layer kept in an attribute
        if attr.startswith("_"):
            continue
        if value is child.obj:
            return f".{attr}"
        if isinstance(value, (list, tuple)):
            index = next((i for i, item in enumerate(value) if item is child.obj), None)
            if index is not None:
                return f".{attr}[{index}]"
    return None


def set_trainable_code(tree: ModelTree, nodes: list[Node], flag: bool,
                       var: str = "model") -> str:
    """The code that makes ``nodes`` trainable (``flag``) or frozen."""
    lines = []
    for node in nodes:
        if node is tree.root:
            lines.append(f"{var}.trainable = {flag}")
        elif node.keras_layer:
            lines.append(f"{layer_accessor(node, var)}.trainable = {flag}")
        else:
            lines.append(f"hubwidgets.set_trainable({var}, {node.path!r}, {flag})"
                         "  # part of a layer: per-variable flags")
    return with_compile_reminder(tree, "\n".join(lines), var)


def freeze_pattern_code(tree: ModelTree, pattern: str, var: str = "model") -> str:
    """The call that freezes what the search box matches."""
    return with_compile_reminder(
        tree, f"hubwidgets.freeze({var}, *[n.path for n in hubwidgets.search({var}, "
              f"{pattern!r})])", var)


def freeze_up_to_code(tree: ModelTree, cut: int, var: str = "model") -> str:
    """The loop that freezes the first ``cut`` top-level layers and unfreezes the rest."""
    code = (f"for layer in {var}.layers[:{cut}]:\n    layer.trainable = False\n"
            f"for layer in {var}.layers[{cut}:]:\n    layer.trainable = True")
    return with_compile_reminder(tree, code, var)


def with_compile_reminder(tree: ModelTree, code: str, var: str = "model") -> str:
    """``code``, plus the ``compile`` call training needs when the model was compiled."""
    if needs_compile(tree):
        code += (f"\n{var}.compile(...)  # again, with a new optimizer: Keras applies "
                 "trainable changes at compile()")
    return code


