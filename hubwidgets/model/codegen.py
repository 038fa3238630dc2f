"""The Python each action stands for: one place that writes it, for clicks and calls alike.

It holds the layer accessors (``layer_accessor``, ``plain_layer_accessor``), the code for
trainable changes (``set_trainable_code``, ``freeze_pattern_code``, ``freeze_up_to_code``)
and the code shown for a weight edit (``edit_code``, and ``edit_action_code`` for a tree
already up to date; ``describe_call`` writes the ``hubwidgets`` call an edit records).

The code is plain Keras where Keras can say it (``model.get_layer('d').trainable = False``)
and a ``hubwidgets`` call where it cannot (part of a Hub module).  A layer whose name repeats
among its siblings is reached by position (``model.layers[2]``), never by its ambiguous name.
"""

from __future__ import annotations

from typing import Any

from .compile_state import needs_compile
from .edit_specs import CodeContext, edit_spec
from .edit_targets import edit_session
from .errors import EditError
from .lora import lora_layers, lora_refreeze_code
from .lora_edits import special_layer
from .matching import matching_nodes
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
    for parent, child in zip(chain, chain[1:], strict=False):
        step = _step(parent, child)
        if step is None:
            return None
        expr += step
    return expr


def _step(parent: Node, child: Node) -> str | None:
    for attr in ("preprocessor", "tokenizer"):  # a KerasHub Task's, its preprocessor's
        if getattr(parent.obj, attr, None) is child.obj:
            return f".{attr}"
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
                       var: str = "model", restored: bool = False) -> str:
    """The code that makes ``nodes`` trainable (``flag``) or frozen.  Unfreezing a scope
    with LoRA adapters also freezes their base kernels again (Keras' ``trainable = True``
    unfreezes them); ``restored``: the unfreeze gave back the flags a hubwidgets freeze of
    the same scope kept, which only hubwidgets can say."""
    lines = []
    for node in nodes:
        accessor = var if node is tree.root else layer_accessor(node, var)
        if flag and restored and node.keras_layer:
            lines.append(f"hubwidgets.unfreeze({var}, {node.path!r})  # the flags it had before "
                         "hubwidgets.freeze: with LoRA, only the adapters train again")
        elif node.keras_layer or node is tree.root:
            if flag and lora_layers(node.obj):  # Keras 3 skips a setter that changes nothing
                lines += [f"{accessor}.trainable = False  # off first: Keras 3 ignores "
                          "trainable = True on a layer",
                          f"{accessor}.trainable = True  # already trainable, and its sub-layers "
                          "would keep their flags", lora_refreeze_code(accessor)]
            else:
                lines.append(f"{accessor}.trainable = {flag}")
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
    if lora_layers(tree.root.obj):  # Keras 3 skips a setter that changes nothing: flip twice
        code = (f"for layer in {var}.layers[:{cut}]:\n    layer.trainable = True  # reaches every "
                "sub-layer only when it changes\n    layer.trainable = False\n"
                f"for layer in {var}.layers[{cut}:]:\n    layer.trainable = False\n"
                "    layer.trainable = True\n" + lora_refreeze_code(var))
    else:
        code = (f"for layer in {var}.layers[:{cut}]:\n    layer.trainable = False\n"
                f"for layer in {var}.layers[{cut}:]:\n    layer.trainable = True")
    return with_compile_reminder(tree, code, var)


def enable_lora_code(tree: Any, nodes: list[Any], rank: int, var: str = "model") -> str:
    """Keras' own code for what :func:`enable_lora` did: ``layer.enable_lora(rank)``."""
    lines = [f"{layer_accessor(node, var)}.enable_lora({rank})" for node in nodes]
    return with_compile_reminder(tree, "\n".join(lines), var)


def with_compile_reminder(tree: ModelTree, code: str, var: str = "model") -> str:
    """``code``, plus the ``compile`` call training needs when the model was compiled."""
    if needs_compile(tree):
        code += (f"\n{var}.compile(...)  # again, with a new optimizer: Keras applies "
                 "trainable changes at compile()")
    return code


# -- the code shown for a weight edit: the hubwidgets call, and plain TensorFlow / Keras with
# -- the same effect, for teaching (the templates are each edit's spec, edit_specs.EDITS) ----
def edit_code(model: Any, action: str, target: str, *args: Any, var: str | None = None,
              **kwargs: Any) -> tuple[str, str]:
    """The hubwidgets call for an edit, and plain Keras / TensorFlow code with the same
    effect (for teaching), e.g. ``edit_code(model, "scale_weights", "d1", 2.0)`` ->
    ``('hubwidgets.scale_weights(model, 'd1', 2.0)', "layer = model.get_layer('d1')\\n
    layer.set_weights([w * 2.0 for w in layer.get_weights()])")``.  Keras layers are reached
    as :func:`layer_accessor` reaches them (``get_layer``, or ``.layers[i]`` where a name
    repeats); anything else (a Hub module's part, one variable) through its variables
    (``hubwidgets.inspect(model).find(path).all_variables()``).
    ``var``: the model's name in the code (default: the session's ``var_name``)."""
    session = edit_session(model)
    return edit_action_code(session.tree, action, target, args, kwargs,
                            var or session.var_name)


def edit_action_code(tree: ModelTree, action: str, target: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any], var: str) -> tuple[str, str]:
    """:func:`edit_code`'s two strings from a tree already up to date with its model (what
    :func:`hubwidgets.model.edits.edit_with_code` shows: no second look at the structure)."""
    spec = edit_spec(action)
    call = f"hubwidgets.{describe_call(action, var, target, args, kwargs)}"
    try:
        nodes = matching_nodes(tree, [target])
    except KeyError:
        raise EditError(f"{target!r} matches no layer or variable of the model.") from None
    arguments = spec.arguments(args, kwargs)
    lines = spec.helper_lines(arguments)

    def reach(node: Node | None) -> str | None:
        return _getter(tree, node, var)

    for node in nodes:
        holds_special = node.class_name != "Variable" and any(
            special_layer(n) for n in node.walk())
        if spec.node_code is not None and not (special_layer(node) or holds_special):
            lines += spec.node_code(CodeContext(tree, node, var, arguments, reach))
            continue
        getter = _getter(tree, node, var)
        meaning = spec.fine_tuned
        if meaning is not None and meaning.code is not None and special_layer(node) \
                and getter is not None:
            lines += meaning.code(node, args, getter)  # LoRA / quantized: the edit's meaning
            continue
        if holds_special:
            lines.append(f"# {node.path}: holds LoRA or quantized layers, where editing each "
                         "variable alone means something else: the hubwidgets call above "
                         "does it layer by layer")
            continue
        if getter is not None and spec.layer_code is not None:
            lines += [f"layer = {getter}", spec.layer_code.format(**arguments)]
            continue
        relative = node.path.split("/", 1)[1] if "/" in node.path else node.path
        if spec.variable_code is None:
            lines.append(f"# {node.path}: hubwidgets.{action} only (no plain code for it)")
            continue
        lines += [f"for info in hubwidgets.inspect({var}).find({relative!r}).all_variables():",
                  "    w = info.variable.numpy()",
                  f"    info.variable.assign({spec.variable_code.format(**arguments)})"]
    return call, "\n".join(lines)


def edit_shown_code(call: str, plain: str) -> str:
    """What the explorer shows for an edit: the hubwidgets call, then the plain code."""
    return f"{call}\n# the same in plain Keras / TensorFlow:\n{plain}"


def undo_code(var: str = "model") -> str:
    """The call that undoes the last edit."""
    return f"hubwidgets.undo({var})"


def redo_code(var: str = "model") -> str:
    """The call that redoes the last undone edit."""
    return f"hubwidgets.redo({var})"


def restore_before_first_edit_code(var: str = "model") -> str:
    """What the explorer's "restore" stands for: a snapshot taken before the first edit."""
    return (f"hubwidgets.restore({var}, before)  # before = hubwidgets.snapshot({var}), "
            "taken before the first edit")


def describe_call(action: str, var: str, target: str, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> str:
    """The call, as Python, with the user's variable name for the model."""
    shown = ", ".join([repr(target)] + [repr(a) for a in args]
                      + [f"{k}={v!r}" for k, v in kwargs.items()])
    return f"{action}({var}, {shown})"


def _getter(tree: ModelTree, node: Node | None, var: str) -> str | None:
    """Plain Keras that reaches a Keras layer node with weights
    (:func:`plain_layer_accessor`), else None."""
    if node is None or node.class_name == "Variable":
        return None
    if node is tree.root:
        return var
    if not node.keras_layer or not callable(getattr(node.obj, "get_weights", None)):
        return None
    return plain_layer_accessor(node, var)
