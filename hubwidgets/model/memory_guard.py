"""The memory guard: refuse a large host allocation that would not fit, before making it.

A kernel killed for lack of memory loses every variable the user had; a refusal loses
nothing.  Every operation that may allocate host memory in proportion to a model (a snapshot
in memory, a restore, the watcher's copy of the previous values, a probe's batch) asks
:func:`ensure_fits` first, with the alternative to name in the error.

Available memory is psutil's ``available`` (what can be allocated without swapping), which
Jupyter already installs; a headroom is kept for the kernel's own work.
"""

from __future__ import annotations

from .errors import InsufficientMemoryError
from .formatting import format_bytes

HEADROOM_BYTES = 256 * 2**20
"""Memory left free after an allocation the guard allows (the kernel's own work, plots...)."""

SMALL_BYTES = 64 * 2**20
"""Allocations below this are never checked (not worth a system call)."""


def available_bytes() -> int:
    """Host memory that can be allocated now without swapping (psutil's ``available``)."""
    import psutil

    return int(psutil.virtual_memory().available)


def ensure_fits(nbytes: int, what: str, instead: str) -> None:
    """Raise :class:`InsufficientMemoryError` when ``nbytes`` more host memory would not fit.

    ``what`` says what would be allocated ("a snapshot of every variable in memory"),
    ``instead`` what to do rather (``"pass a path: hw.snapshot(model, 'before.hws')"``).
    """
    if nbytes < SMALL_BYTES:
        return
    free = available_bytes()
    if nbytes + HEADROOM_BYTES > free:
        raise InsufficientMemoryError(
            f"{what} needs {format_bytes(nbytes)} of host memory, and only "
            f"{format_bytes(free)} is available (keeping {format_bytes(HEADROOM_BYTES)} free "
            f"for the kernel); nothing was allocated. Instead, {instead}.")
