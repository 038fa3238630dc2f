"""Errors raised by the backend. Each message says what to do next."""

from __future__ import annotations


class HubWidgetsError(Exception):
    """Base class of every error hubwidgets raises on purpose."""


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
