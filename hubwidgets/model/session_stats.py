"""Statistics of a session's model, kept per variable until that variable changes.

:class:`VariableStatistics` keeps one :class:`~hubwidgets.model.stats.WeightStats` per
variable (by the variable's identity, so a structure change, ``enable_lora`` or a layer
added, keeps the figures of every variable still there).  An edit, undo or restore drops
only the variables it wrote; the end of a watched ``fit`` only those training can change;
a plain refresh drops them all.

:class:`BackgroundStatistics` fills a store on a thread, a few layers at a time (the
selected layer first, then the model in order), so a view shows at once whatever the
model's size, and the kernel stays free for the next cell.  A result is kept only if no
change reached its variable while it was computed: a value assigned during the work is
never shown stale, its variable is simply computed again.
"""

from __future__ import annotations

import threading
import time
import warnings
import weakref
from typing import Any, Callable, Iterable

from .stats import NonFiniteWeightsWarning, WeightStats, weight_stats
from .tree import ModelTree, VariableInfo

BATCH_BYTES = 64 * 2**20
"""Weight bytes reduced per step of the background work (progress and priority move
between steps)."""

SYNC_BYTES = 64 * 2**20
"""Missing statistics up to this many weight bytes (a few ms of work) are computed at once
by a view that opens or redraws after a change (an edit of a layer); more are left to the
background, so the first display never waits for a large model's weights."""


class VariableStatistics:
    """Per-variable statistics of one model at one bin count, each kept until its variable
    changes.  Thread-safe: the background work stores results while views read them."""

    def __init__(self, bins: int = 64, effective: bool = False) -> None:
        self.bins = bins
        self.effective = effective
        """Quantized and LoRA layers' base weights as the kernel they compute with
        (:func:`~hubwidgets.effective_weights`), not their stored codes."""
        self._lock = threading.Lock()
        self._computing = threading.Lock()  # one reduction at a time: none is done twice
        self._kept: dict[int, WeightStats] = {}
        self._epoch: dict[int, int] = {}
        self._all_epoch = 0
        self.changed = threading.Event()
        """Set whenever variables are dropped (the background work wakes up)."""

    # -- reading -----------------------------------------------------------------------------
    def known(self, variables: Iterable[VariableInfo]) -> dict[str, WeightStats]:
        """The kept statistics of ``variables``, by path; no value is read."""
        with self._lock:
            found = {v.path: self._kept.get(v.key) for v in variables}
        return {path: s if s.path == path else _renamed(s, path)
                for path, s in found.items() if s is not None}

    def missing(self, variables: Iterable[VariableInfo]) -> list[VariableInfo]:
        """Those of ``variables`` with no kept statistics."""
        with self._lock:
            return [v for v in variables if v.key not in self._kept]

    def of(self, variables: Iterable[VariableInfo]) -> dict[str, WeightStats]:
        """The statistics of ``variables``, computing the missing ones now."""
        variables = list(variables)
        self.compute(self.missing(variables))
        return self.known(variables)

    # -- changing ----------------------------------------------------------------------------
    def compute_if_small(self, variables: Iterable[VariableInfo]) -> bool:
        """Compute the missing statistics of ``variables`` now when they hold at most
        :data:`SYNC_BYTES` of weights (an edited layer, a small model); True when it did."""
        missing = self.missing(variables)
        if sum(v.nbytes for v in missing) > SYNC_BYTES:
            return False
        self.compute(missing)
        return True

    def compute(self, variables: list[VariableInfo]) -> None:
        """Read and reduce ``variables`` now, and keep each result unless its variable was
        dropped while it was computed."""
        with self._computing:
            self._compute(variables)

    def _compute(self, variables: list[VariableInfo]) -> None:
        with self._lock:  # what another call computed meanwhile is not done again
            unique = [v for v in {v.key: v for v in variables}.values()
                      if v.key not in self._kept]
            started = self._all_epoch, {v.key: self._epoch.get(v.key, 0) for v in unique}
        if not unique:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteWeightsWarning)
            results = weight_stats(unique, bins=self.bins, effective=self.effective)
        with self._lock:
            if self._all_epoch != started[0]:
                return
            for v, s in zip(unique, results.values(), strict=True):
                if self._epoch.get(v.key, 0) == started[1][v.key]:
                    self._kept[v.key] = s

    def drop(self, keys: Iterable[int] | None = None) -> None:
        """Forget the statistics of the variables with these keys (every variable: None)."""
        with self._lock:
            if keys is None:
                self._all_epoch += 1
                self._kept.clear()
            else:
                for key in keys:
                    self._epoch[key] = self._epoch.get(key, 0) + 1
                    self._kept.pop(key, None)
        self.changed.set()

    def keep_only(self, tree: ModelTree) -> None:
        """Forget the variables the model no longer has (after a structure change)."""
        present = {v.key for v in tree.variables()}
        with self._lock:
            for key in [k for k in self._kept if k not in present]:
                del self._kept[key]
        self.changed.set()


def _renamed(stats: WeightStats, path: str) -> WeightStats:
    import dataclasses

    return dataclasses.replace(stats, path=path)


class BackgroundStatistics:
    """Fills a session's :class:`VariableStatistics` on a thread, layer by layer.

    The variables of the session's selection go first, then the model in order.
    ``on_progress(done, total)`` is called from the thread after every step.
    The thread holds the session weakly and ends with it, or at :meth:`stop`.
    """

    def __init__(self, session: Any, bins: int,
                 on_progress: Callable[[int, int], None] | None = None,
                 effective: bool = False) -> None:
        self._session = weakref.ref(session)
        self.store = statistics_of(session, bins, effective)
        self._on_progress = on_progress
        self._idle = threading.Event()
        self._stopped = threading.Event()
        self.error: BaseException | None = None
        """The exception that ended the work, if one did."""
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="hubwidgets-statistics")
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every variable has its statistics (or ``timeout`` seconds passed);
        True when the work is done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not self._idle.wait(left):
                return False
            session = self._session()
            if session is None or self._stopped.is_set() or self.error is not None:
                return True
            if not self.store.missing(session.tree.variables()):
                return True
            self._idle.clear()  # dropped since: the thread is working again
            self.store.changed.set()
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (what it computes now is still kept), waiting up to ``timeout``
        seconds for it: once stopped it holds nothing of the model."""
        self._stopped.set()
        self.store.changed.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                session = self._session()
                if session is None:
                    return
                work = self._next_batch(session)
                if work is None:
                    del session
                    self._idle.set()
                    self.store.changed.wait()
                    self.store.changed.clear()
                    self._idle.clear()
                    continue
                batch, done, total = work
                del session, work
                self.store.compute(batch)
                done += len(batch)
                del batch  # an idle thread holds nothing of the model (its tree, its layers)
                if self._on_progress is not None:
                    self._on_progress(done, total)
        except BaseException as error:  # noqa: BLE001 - kept for the view; never lost silently
            self.error = error
        finally:
            self._idle.set()

    def _next_batch(self, session: Any) -> tuple[list[VariableInfo], int, int] | None:
        tree = session.tree
        variables = tree.variables()
        missing = self.store.missing(variables)
        if not missing:
            return None
        first = _variables_under(tree, session.selection)
        order = [v for v in missing if v.key in first] + [v for v in missing
                                                          if v.key not in first]
        batch, size = [], 0
        for v in order:
            batch.append(v)
            size += v.nbytes
            if size >= BATCH_BYTES:
                break
        return batch, len(variables) - len(missing), len(variables)


def _variables_under(tree: ModelTree, path: str) -> set[int]:
    if not path:
        return set()
    try:
        return {tree.find_variable(path).key}
    except KeyError:
        pass
    try:
        return {v.key for v in tree.find(path).all_variables()}
    except KeyError:
        return set()


def statistics_of(session: Any, bins: int = 64, effective: bool = False) -> VariableStatistics:
    """The session's kept statistics at ``bins`` bins, of the stored variables or (with
    ``effective``) of the kernels quantized and LoRA layers compute with (made on first use;
    the session drops what each change touched, see ``ModelSession.statistics``)."""
    key = (bins, bool(effective))
    store = session.statistics.get(key)
    if store is None:
        store = session.statistics[key] = VariableStatistics(bins, bool(effective))
    return store


def every_variable_statistics(session: Any, bins: int = 64) -> dict[str, WeightStats]:
    """:func:`~hubwidgets.weight_stats` of every variable of the session's model, computing
    only those with no kept statistics."""
    return statistics_of(session, bins).of(session.tree.variables())


def nonfinite_paths(session: Any) -> set[str]:
    """Paths of the variables holding NaN or Inf among those whose statistics are known
    (never computes: the background work fills them in)."""
    variables = session.tree.variables()
    found: set[str] = set()
    for store in list(session.statistics.values()):  # NaN/Inf counts do not depend on bins
        found |= {path for path, s in store.known(variables).items() if s.has_nonfinite}
    return found
