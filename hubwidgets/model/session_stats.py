"""Statistics of a session's model, computed once per values version and shared by views."""

from __future__ import annotations

import warnings
from .session import ModelSession
from .stats import NonFiniteWeightsWarning, WeightStats, weight_stats


def session_stats(session: ModelSession, bins: int = 64) -> dict[str, WeightStats]:
    """:func:`~hubwidgets.weight_stats` of every variable of the session's model, kept in
    ``session.cache`` until the weights change (``session.refresh("values")``)."""
    key = ("weight_stats", bins)
    if key not in session.cache:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteWeightsWarning)
            session.cache[key] = weight_stats(session.tree, bins=bins)
    return session.cache[key]


def nonfinite_paths(session: ModelSession, bins: int = 64) -> set[str]:
    """Paths of the variables holding NaN or Inf values."""
    return {path for path, s in session_stats(session, bins).items() if s.has_nonfinite}
