"""Every error and warning hubwidgets raises or gives on purpose, in one place.

Errors derive from :class:`HubWidgetsError` (and the built-in class they are a kind of, so
``except ValueError`` still catches a :class:`FreezeError`); warnings derive from
:class:`HubWidgetsWarning`, a ``UserWarning``.  Each message says what to do next.  The
modules that raise them re-export them under their old names
(``hubwidgets.model.matching.SearchTooSlowError`` ...), and ``hubwidgets`` exports them all.
"""

from __future__ import annotations


class HubWidgetsError(Exception):
    """Base class of every error hubwidgets raises on purpose."""


class ArgumentError(HubWidgetsError, ValueError):
    """An argument of a public function outside what it accepts (``bins=0``, an empty
    pattern); nothing ran."""


class UnbuiltModelError(HubWidgetsError, ValueError):
    """The model has no weights yet because it was never built or called."""


class NotAModelError(HubWidgetsError, TypeError):
    """The object is not something hubwidgets can look inside."""


class ModelLoadError(HubWidgetsError, ValueError):
    """A path or handle could not be loaded (missing, corrupt, or offline)."""


class FreezeError(HubWidgetsError, ValueError):
    """A trainable change that cannot take effect as asked."""


class EditError(HubWidgetsError, ValueError):
    """An edit that was refused; nothing was changed."""


class SearchTooSlowError(HubWidgetsError, ValueError):
    """A pattern took longer than the search budget."""


class InsufficientMemoryError(HubWidgetsError, MemoryError):
    """A host allocation was refused because it would not fit; nothing was allocated."""


class ProbeError(HubWidgetsError, ValueError):
    """A probe that cannot run as asked; the model was not run and nothing changed."""


class MessageError(HubWidgetsError, ValueError):
    """A message from the browser that does not fit any action."""


class ModelGoneError(HubWidgetsError, ReferenceError):
    """A view whose model was garbage collected after the view stopped holding it."""


class UnknownKeywordError(HubWidgetsError, TypeError):
    """A widget was given a keyword argument it does not take; nothing was built."""


class OutOfDate(HubWidgetsError):
    """Internal: a check given to ``host_stats.variable_reductions`` said its plan no longer
    describes the model, so the reductions were dropped.  ``weight_stats`` catches it and
    starts again from the model's new structure; it never reaches the user."""


class HubWidgetsWarning(UserWarning):
    """Base class of every warning hubwidgets gives."""


class NonFiniteWeightsWarning(HubWidgetsWarning):
    """Some weights are NaN or Inf."""


class ReplicaDriftWarning(HubWidgetsWarning):
    """The replicas of a mirrored variable no longer hold the same value."""


class UndoHistoryWarning(HubWidgetsWarning):
    """An undo step was dropped (the history's memory budget), or could not be kept."""
