"""``SessionCache``: the one cache of results derived from a model, kept by its session.

The one invalidation rule: each entry names the changes it depends on besides the structure
("flags", "values"); a change of the structure drops every entry (the session has a new
tree), a "flags" or "values" change drops the entries that name it, and a change of the
selection drops none.  What the session tells its views is what it tells its cache
(:meth:`hubwidgets.model.session.ModelSession.update`), so nothing else empties it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Literal

from .errors import HubWidgetsError

Dependency = Literal["structure", "flags", "values"]
"""A change an entry depends on ("structure": every entry, said or not)."""
DEPENDENCIES = frozenset({"structure", "flags", "values"})


class SessionCache:
    """Results derived from one model (a statistics plan, a probe's marks...), by key, each
    dropped by the changes it names in ``depends_on`` and by a change of the structure."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Any, frozenset[str]]] = {}

    def get(self, key: str) -> Any:
        """The value kept under ``key``, or None."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: str, value: Any, depends_on: Iterable[Dependency] = ()) -> Any:
        """Keep ``value`` under ``key`` until a change it ``depends_on`` (or of the
        structure); returns it."""
        self._entries[key] = (value, _dependencies(depends_on))
        return value

    def cached(self, key: str, make: Callable[[], Any], depends_on: Iterable[Dependency] = (),
               current: Callable[[Any], bool] | None = None) -> Any:
        """The value kept under ``key``; ``make()`` kept there when there is none, or when
        ``current(value)`` says the kept one is out of date (None stands for "none kept":
        a ``make`` that gives None is called again next time)."""
        value = self.get(key)
        if value is None or (current is not None and not current(value)):
            value = self.put(key, make(), depends_on)
        return value

    def changed(self, what: str) -> None:
        """Drop what a change of ``what`` outdates: every entry for "structure", the
        entries that depend on it for "flags" and "values", none for another change."""
        if what == "structure":
            self._entries.clear()
        elif what in DEPENDENCIES:
            self._entries = {key: entry for key, entry in self._entries.items()
                             if what not in entry[1]}

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"SessionCache({sorted(self._entries)})"


def _dependencies(depends_on: Iterable[str]) -> frozenset[str]:
    if isinstance(depends_on, str):  # depends_on="values": one change, not its letters
        depends_on = (depends_on,)
    found = frozenset(depends_on)
    unknown = sorted(found - DEPENDENCIES)
    if unknown:
        raise HubWidgetsError(
            f"A cache entry depends on {', '.join(map(repr, unknown))}, which is not a change "
            f"a session makes; name some of {', '.join(sorted(DEPENDENCIES))}.")
    return found
