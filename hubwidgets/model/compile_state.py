"""Whether a compiled Keras model must be compiled again before training sees a change.

Keras records the layers' ``trainable`` flags at ``compile()``; a per-variable change (part of
a Hub module) does not show there, so the model's session remembers it against the objects
that ``compile()`` replaces each time it runs.
"""

from __future__ import annotations

from typing import Any

from .session import existing_session, session_for
from .tree import ModelTree


def needs_compile(model: Any) -> bool:
    """True when ``model`` was compiled and what it trains changed since."""
    obj = model.obj if isinstance(model, ModelTree) else model
    state = getattr(obj, "_compiled_trainable_state", None)
    if not is_compiled(obj) or not state:
        return False
    session = existing_session(obj)
    stale = session.outdated_compile if session is not None else None
    if stale is not None and _same_compile(stale, _compile_token(obj)):
        return True
    return any(layer.trainable != was for layer, was in state.items())


def is_compiled(model: Any) -> bool:
    return bool(getattr(model, "compiled", getattr(model, "_is_compiled", False)))


def _compile_token(model: Any) -> tuple[Any, ...]:
    """Objects that ``compile()`` replaces each time it runs (Keras 3 and tf_keras)."""
    attrs = model.__dict__
    return (attrs.get("optimizer"), attrs.get("_compile_loss"), attrs.get("compiled_loss"))


def _same_compile(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return all(x is y for x, y in zip(a, b))


def mark_variable_change(tree: ModelTree) -> None:
    """Per-variable changes do not show in Keras' layer-flag record: remember them."""
    model = tree.obj
    if is_compiled(model):
        session = existing_session(model) or session_for(model)
        session.outdated_compile = _compile_token(model)
