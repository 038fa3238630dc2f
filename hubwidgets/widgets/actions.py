"""Widget actions as a table: a method marked :func:`action` is callable from the browser.

A message ``{"action": "name", **fields}`` is checked against the method's signature before
anything runs: the action must exist, every field must be a declared parameter of the right
type (``str``, ``bool`` or ``float``; strings of bounded length, numbers finite), and
required fields must be present.
A message that fails is refused with a :class:`MessageError` that says why.
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from typing import Any, Callable, NamedTuple

from ..model.errors import MessageError

MAX_STRING = 10_000
ACTION_MARK = "_hubwidgets_action"


def action(method: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``method`` as an action the browser may call by name."""
    setattr(method, ACTION_MARK, True)
    return method


def actions_of(cls: type) -> dict[str, Callable[..., Any]]:
    """The actions a widget class offers, by name: its :func:`action` methods, and those
    its ``generated_actions()`` classmethod makes from a table (read at each call, so an
    entry added at run time is offered at once)."""
    return {name: spec.method for name, spec in _all_specs(cls).items()}


def _all_specs(cls: type) -> dict[str, _ActionSpec]:
    specs = dict(_action_specs(cls))
    generated = getattr(cls, "generated_actions", None)
    for name, method in (generated() if generated is not None else {}).items():
        specs.setdefault(name, _spec_of(method))
    return specs


@functools.lru_cache(maxsize=None)
def _spec_of(method: Callable[..., Any]) -> _ActionSpec:
    params = {p.name: p for p in inspect.signature(method).parameters.values()
              if p.name != "self"}
    return _ActionSpec(method, params, typing.get_type_hints(method))


class _ActionSpec(NamedTuple):
    method: Callable[..., Any]
    params: dict[str, inspect.Parameter]
    hints: dict[str, Any]


@functools.cache
def _action_specs(cls: type) -> dict[str, _ActionSpec]:
    """Each action's method, parameters and type hints, derived once per class (not per
    message: a slider drag sends dozens)."""
    specs = {}
    for name in dir(cls):
        member = getattr(cls, name)
        if getattr(member, ACTION_MARK, False):
            specs[name] = _spec_of(member)
    return specs


def bind_message(cls: type, content: Any) -> tuple[str, dict[str, Any]]:
    """(action name, keyword arguments) for a message, or :class:`MessageError`."""
    if not isinstance(content, dict):
        raise MessageError(f"Ignored a message that is not an object: {type(content).__name__}.")
    name = content.get("action")
    table = _all_specs(cls)
    if not isinstance(name, str) or name not in table:
        raise MessageError(f"Unknown action {name!r}; known: {', '.join(sorted(table))}.")
    _, params, hints = table[name]
    fields = {k: v for k, v in content.items() if k != "action"}
    unknown = sorted(set(fields) - set(params))
    if unknown:
        raise MessageError(f"Action {name!r} takes no field {', '.join(map(repr, unknown))}.")
    for pname, param in params.items():
        if pname not in fields:
            if param.default is inspect.Parameter.empty:
                raise MessageError(f"Action {name!r} needs the field {pname!r}.")
            continue
        _check_type(name, pname, fields[pname], hints.get(pname, Any))
    return name, fields


def _check_type(action_name: str, field: str, value: Any, expected: Any) -> None:
    if expected is float:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise MessageError(f"Action {action_name!r}: {field!r} must be a finite number, "
                               f"got {value!r}.")
        return
    if expected is bool and type(value) is not bool:
        raise MessageError(f"Action {action_name!r}: {field!r} must be true or false, "
                           f"got {value!r}.")
    if expected is str:
        if not isinstance(value, str):
            raise MessageError(f"Action {action_name!r}: {field!r} must be a string, "
                               f"got {type(value).__name__}.")
        if len(value) > MAX_STRING:
            raise MessageError(f"Action {action_name!r}: {field!r} is {len(value):,} "
                               f"characters long (at most {MAX_STRING:,}).")
