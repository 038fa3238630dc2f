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


def nonfinite_paths(session: ModelSession) -> set[str]:
    """Paths of the variables holding NaN or Inf values, from whichever statistics the
    session holds (NaN/Inf counts do not depend on the bins; computed with 64 when none)."""
    cached = [stats for key, stats in session.cache.items()
              if isinstance(key, tuple) and key[0] == "weight_stats"]
    stats = cached[0] if cached else session_stats(session)
    return {path for path, s in stats.items() if s.has_nonfinite}
