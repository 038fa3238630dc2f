"""What a weight edit and the code shown for it both look up: the live model's session (a
path is refused: edits change a live model), the layer that owns each variable, and that
layer's initializer for it.  Kept out of both so that the imports run one way:
:mod:`.edits` imports :mod:`.codegen`, both import this module, and it imports neither."""

from __future__ import annotations

from typing import Any, Callable

from .errors import EditError


def edit_session(model: Any) -> Any:
    """The model's session (one structure check: walked again only if the model changed);
    an :class:`EditError` for a path (edits change a live model, not a file)."""
    from .session import session_for

    _refuse_paths(model)
    return session_for(model)


def _refuse_paths(model: Any) -> None:
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        raise EditError("Edits change a live model, not a file: load it first (model = "
                        "keras.models.load_model(path), or hub.load(path)) and pass the "
                        "model; nothing changed.")


def variable_owners(tree: Any) -> dict[int, Any]:
    """variable key -> the node (layer) whose own variables include it."""
    out: dict[int, Any] = {}
    for node in tree.root.walk():
        for var in node.variables:
            out.setdefault(var.key, node)
    return out


def layer_initializer(layer: Any, var: Any) -> Callable[..., Any] | None:
    """The layer's initializer for ``var`` (``<short name>_initializer`` on the layer or its
    cell), or None."""
    from .adapters.common import short_name

    if layer is None:
        return None
    name = short_name(var)
    for owner in (layer, getattr(layer, "cell", None)):
        init = getattr(owner, f"{name}_initializer", None) if owner is not None else None
        if callable(init):
            return init
    return None
