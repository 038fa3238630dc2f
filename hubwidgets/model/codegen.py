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
from .edit_targets import edit_session, layer_initializer, variable_owners
from .errors import EditError
from .lora import lora_layers, lora_refreeze_code
from .lora_edits import plan_code_lines, special_layer
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


def with_compile_reminder(tree: ModelTree, code: str, var: str = "model") -> str:
    """``code``, plus the ``compile`` call training needs when the model was compiled."""
    if needs_compile(tree):
        code += (f"\n{var}.compile(...)  # again, with a new optimizer: Keras applies "
                 "trainable changes at compile()")
    return code


# -- the code shown for a weight edit: the hubwidgets call, and plain TensorFlow / Keras with
# -- the same effect, for teaching -----------------------------------------------------------
EDIT_ACTIONS = frozenset({"scale_weights", "prune_weights", "add_noise", "reset_weights"})
"""The weight edits :func:`edit_code` writes code for (those :mod:`.edits` applies)."""

_PLAIN = {
    "scale_weights": "layer.set_weights([w * {0!r} for w in layer.get_weights()])",
    "prune_weights": "layer.set_weights([prune(w, {0!r}) for w in layer.get_weights()])",
    "add_noise": "layer.set_weights([noisy(w, {0!r}) for w in layer.get_weights()])",
}
_HELPERS = {
    "prune_weights": [
        "def prune(w, fraction):  # the smallest |w| to zero; ties in C order",
        "    w = w.copy()",
        "    order = np.argsort(np.abs(w.astype('float64')), axis=None, kind='stable')",
        "    w.flat[order[:math.floor(fraction * w.size)]] = 0",
        "    return w"],
    "add_noise": [
        "rng = np.random.default_rng({seed!r})",
        "def noisy(w, std):",
        "    wide = w.astype('float64')",
        "    sigma = {sigma}",
        "    return (wide + rng.normal(0.0, sigma, w.shape)).astype(w.dtype)"],
}


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
    if action not in EDIT_ACTIONS:
        raise EditError(f"edit_code knows scale_weights, prune_weights, add_noise and "
                        f"reset_weights, not {action!r}.")
    call = f"hubwidgets.{describe_call(action, var, target, args, kwargs)}"
    try:
        nodes = matching_nodes(tree, [target])
    except KeyError:
        raise EditError(f"{target!r} matches no layer or variable of the model.") from None
    lines = {"prune_weights": ["import math", "import numpy as np"],
             "add_noise": ["import numpy as np"]}.get(action, [])
    if action == "add_noise":
        seed, relative = kwargs.get("seed", args[1] if len(args) > 1 else None), \
            kwargs.get("relative", args[2] if len(args) > 2 else False)
        sigma = "std * float(wide.std()) if wide.size else std" if relative else "std"
        lines += [h.format(seed=seed, sigma=sigma) for h in _HELPERS[action]]
    elif action in _HELPERS:
        lines += _HELPERS[action]
    owners = variable_owners(tree) if action == "reset_weights" else {}
    for node in nodes:
        if action == "reset_weights" and not (special_layer(node) or (
                node.class_name != "Variable" and any(special_layer(n) for n in node.walk()))):
            lines += _reset_lines(tree, node, owners, var)
            continue
        getter = _getter(tree, node, var)
        if action in ("scale_weights", "reset_weights") and special_layer(node) \
                and getter is not None:
            lines += plan_code_lines(node, action, args, getter)  # LoRA / quantized: its meaning
            continue
        if node.class_name != "Variable" and any(special_layer(n) for n in node.walk()):
            lines.append(f"# {node.path}: holds LoRA or quantized layers, where editing each "
                         "variable alone means something else: the hubwidgets call above "
                         "does it layer by layer")
            continue
        if getter is not None:
            lines += [f"layer = {getter}", _PLAIN[action].format(*args[:1])]
            continue
        helper = {"scale_weights": f"w * {args[0]!r}", "prune_weights": f"prune(w, {args[0]!r})",
                  "add_noise": f"noisy(w, {args[0]!r})"}[action]
        relative = node.path.split("/", 1)[1] if "/" in node.path else node.path
        lines += [f"for info in hubwidgets.inspect({var}).find({relative!r}).all_variables():",
                  "    w = info.variable.numpy()",
                  f"    info.variable.assign({helper})"]
    return call, "\n".join(lines)


def describe_call(action: str, var: str, target: str, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> str:
    """The call, as Python, with the user's variable name for the model."""
    shown = ", ".join([repr(target)] + [repr(a) for a in args]
                      + [f"{k}={v!r}" for k, v in kwargs.items()])
    return f"{action}({var}, {shown})"


def _reset_lines(tree: ModelTree, node: Node, owners: dict[int, Any], var: str) -> list[str]:
    from .adapters.common import short_name

    lines, current = [], None
    for info in node.all_variables():
        owner_node = owners.get(info.key)
        layer = owner_node.obj if owner_node is not None else None
        name = short_name(info.variable)
        owner = _getter(tree, owner_node, var)
        if layer_initializer(layer, info.variable) is None or owner is None:
            lines.append(f"# {info.path}: no initializer reachable from plain code; left as is")
            continue
        if owner != current:
            lines.append(f"layer = {owner}")
            current = owner
        lines.append(f"layer.{name}.assign(layer.{name}_initializer(layer.{name}.shape, "
                     f"dtype=layer.{name}.dtype))")
    return lines


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
