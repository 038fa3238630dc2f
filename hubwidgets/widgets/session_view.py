"""``SessionView``: what every view of a model shares: it follows one ``ModelSession``, and
never keeps the model alive on its own once it is closed or no longer shown."""

from __future__ import annotations

import weakref
from typing import Any, Callable

from ..model.errors import ModelGoneError
from ..model.session import ModelSession
from ..model.tree import ModelTree

GONE = ("This model no longer exists: its views were closed or cleared and the last "
        "reference to it was deleted. Run hubwidgets.explore(model) on a live model.")


class SessionHandle:
    """A session held strongly while a view needs it, weakly once the view is closed or no
    longer shown anywhere (:meth:`release`): a closed or cleared dashboard never keeps a
    5 GB model alive.  The session (and so its model) is reachable again with :meth:`hold`
    while the user still holds the model."""

    _session_ref: Callable[[], ModelSession | None] = staticmethod(lambda: None)
    _session_pin: ModelSession | None = None

    @property
    def session(self) -> ModelSession:
        """The model's session; :class:`ModelGoneError` once the model no longer exists."""
        session = self._session_pin or self._session_ref()
        if session is None:
            raise ModelGoneError(GONE)
        return session

    @session.setter
    def session(self, session: ModelSession) -> None:
        self._session_ref = weakref.ref(session)
        self._session_pin = session

    @property
    def model_exists(self) -> bool:
        """Whether the model this view shows is still alive."""
        return (self._session_pin or self._session_ref()) is not None

    def release(self) -> None:
        """Hold the session weakly: the model lives only as long as the user holds it."""
        self._session_pin = None

    def hold(self) -> bool:
        """Hold the session strongly again (the view is shown); False when it is gone."""
        self._session_pin = self._session_ref()
        return self._session_pin is not None


class SessionView(SessionHandle):
    """A mixin for widgets that observe a model's session: ``_follow(session)`` subscribes
    ``self._on_session_change``; ``close()`` unsubscribes and lets the model go, so a closed
    view is forgotten and keeps nothing alive."""

    _stop_observing: Callable[[], None] | None = None

    def _follow(self, session: ModelSession) -> None:
        self.session = session
        self._stop_observing = session.observe(self._on_session_change)

    def _on_session_change(self, session: ModelSession, what: str) -> None:
        """Called after every change of the session ("structure", "flags", "values",
        "selection")."""

    @property
    def tree(self) -> ModelTree:
        """The model's tree, as the session holds it now."""
        return self.session.tree

    def close(self) -> None:
        """Stop following the session and close the view."""
        if self._stop_observing is not None:
            self._stop_observing()
            self._stop_observing = None
        self.release()
        close_children(self)
        super().close()  # type: ignore[misc]


def close_children(widget: Any) -> None:
    """Close every widget below ``widget`` (ipywidgets' ``close()`` closes only the widget
    itself: its children stay in the registry with their callbacks, and keep alive what
    those callbacks hold, up to a model)."""
    for child in list(getattr(widget, "children", ()) or ()):
        close_children(child)
        child.close()


def count_views(counter: Any, change: Any) -> int | None:
    """The browser's view count after a ``{"view": "shown" | "removed"}`` message (anything
    else: None, not a view message)."""
    if not isinstance(change, dict) or set(change) != {"view"}:
        return None
    if change["view"] == "shown":
        return counter + 1
    if change["view"] == "removed":
        return max(counter - 1, 0)
    return None
