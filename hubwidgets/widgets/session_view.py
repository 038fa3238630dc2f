"""``SessionView``: what every view of a model shares: it follows one ``ModelSession``."""

from __future__ import annotations

from typing import Callable

from ..model.session import ModelSession
from ..model.tree import ModelTree


class SessionView:
    """A mixin for widgets that observe a model's session: ``_follow(session)`` subscribes
    ``self._on_session_change``; ``close()`` unsubscribes, so a closed view is forgotten."""

    session: ModelSession
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
        super().close()  # type: ignore[misc]
