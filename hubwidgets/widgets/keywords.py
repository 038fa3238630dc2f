"""``KnownKeywords``: every widget refuses a keyword argument it does not take, in one place.

As lonboard's ``BaseWidget`` does with ``trait_names()``: a widget takes the keyword
parameters of its ``__init__`` and, when that ``__init__`` passes ``**kwargs`` on, its public
traits (``layout``, ``selected`` ...).  Anything else is refused before the widget is built
(so before the model is looked at) with an :class:`UnknownKeywordError` (a ``TypeError``)
that names the unknown and the accepted names.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from ..model.errors import UnknownKeywordError


def accepted_keywords(cls: type) -> list[str]:
    """The keyword arguments ``cls(...)`` takes: its ``__init__``'s named parameters, and its
    public traits when ``__init__`` passes ``**kwargs`` on."""
    return list(_accepted(cls))


@functools.cache  # derived once per class, not at every widget built
def _accepted(cls: type) -> tuple[str, ...]:
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    named = [p.name for p in parameters
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        named += [t for t in cls.class_trait_names() if not t.startswith("_")]
    return tuple(sorted(set(named)))


def refuse_unknown_keywords(cls: type, kwargs: dict[str, Any]) -> None:
    """Raise :class:`UnknownKeywordError` when ``kwargs`` holds a name ``cls`` does not take."""
    accepted = accepted_keywords(cls)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise UnknownKeywordError(
            f"{cls.__name__} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(accepted)}.")


class KnownKeywords:
    """A mixin for widgets (first among the bases): unknown keyword arguments are refused
    before ``__init__`` runs."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        refuse_unknown_keywords(cls, kwargs)
        return super().__new__(cls, *args, **kwargs)
