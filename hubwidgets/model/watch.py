"""``hubwidgets.watch``: a Keras callback that records, every interval of ``fit``, each layer's
weight distribution and its update-to-weight ratio ‖Δw‖/‖w‖, plus the loss and metrics.

The callback belongs to the model's own Keras generation (Keras 3 or tf_keras).  Its records
are plain numbers (:class:`TrainingHistory`); the live panel that draws them lives in
:mod:`hubwidgets.widgets.training` and is created only when the callback is displayed.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import watch_reductions as reduce
from .errors import ArgumentError, HubWidgetsError, ReplicaDriftWarning, UnbuiltModelError
from .watch_reductions import WatchedWeight



@dataclass
class LayerRecord:
    """One layer at the end of one interval.  Statistics are over the layer's weights (the
    variables an optimizer could train; BatchNorm moving statistics are left out, since no
    gradient moves them).  ``update_ratio`` is ‖w_t − w_{t−1}‖ / ‖w_{t−1}‖ over the interval:
    exactly 0 when no weight moved; NaN with ``update_ratio=False``, or when a weight that was
    frozen when ``fit`` began changed (no copy of frozen weights is kept, so how far it moved
    is unknown).  ``ratio_note`` says why a ratio is NaN ("" otherwise)."""

    interval: int
    step: int
    epoch: int
    path: str
    mean: float
    std: float
    norm: float
    min: float
    max: float
    update_ratio: float
    counts: np.ndarray
    edges: np.ndarray
    nonfinite: int = 0
    ratio_note: str = ""


@dataclass
class TrainingHistory:
    """What a watcher recorded: per-interval logs and per-layer records."""

    layers: list[str] = field(default_factory=list)
    records: list[LayerRecord] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    logs: dict[str, list[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def intervals(self) -> int:
        """Number of intervals recorded."""
        return len(self.steps)

    def layer(self, path: str) -> list[LayerRecord]:
        """The records of one layer, in time order."""
        return [r for r in self.records if r.path == path]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays, one row per (interval, layer): ``interval``, ``step``,
        ``epoch``, ``path``, ``mean``, ``std``, ``norm``, ``min``, ``max``, ``update_ratio``,
        ``ratio_note``, ``counts`` (rows x bins) and ``edges`` (rows x bins+1)."""
        rows = self.records
        out: dict[str, np.ndarray] = {
            "interval": np.array([r.interval for r in rows], dtype=np.int64),
            "step": np.array([r.step for r in rows], dtype=np.int64),
            "epoch": np.array([r.epoch for r in rows], dtype=np.int64),
            "path": np.array([r.path for r in rows], dtype=str),
            "ratio_note": np.array([r.ratio_note for r in rows], dtype=str),
        }
        for name in ("mean", "std", "norm", "min", "max", "update_ratio"):
            out[name] = np.array([getattr(r, name) for r in rows], dtype=np.float64)
        bins = max((len(r.counts) for r in rows), default=0)
        out["counts"] = np.array([r.counts for r in rows], dtype=np.int64).reshape(-1, bins)
        out["edges"] = np.array([r.edges for r in rows], dtype=np.float64).reshape(-1, bins + 1)
        return out

    def logs_arrays(self) -> dict[str, np.ndarray]:
        """Loss and metrics per interval (NaN where a metric was not reported)."""
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.logs.items()}

    def to_dataframe(self) -> Any:
        """One row per (interval, layer) as a pandas DataFrame (needs pandas); ``counts`` and
        ``edges`` are arrays in their cells."""
        import pandas as pd

        arrays = self.to_arrays()
        frame = pd.DataFrame({k: v for k, v in arrays.items() if v.ndim == 1})
        frame["counts"] = list(arrays["counts"])
        frame["edges"] = list(arrays["edges"])
        return frame


@dataclass(eq=False)
class _Layer:
    path: str
    weights: list[WatchedWeight]
    last: dict[str, Any] | None = None  # the last record's statistics

    @property
    def variables(self) -> list[Any]:
        """The live variables (Keras 3 wrappers or tf.Variables)."""
        return [w.variable for w in self.weights]

    @property
    def host(self) -> bool:
        return all(w.host for w in self.weights)


def _pick_weights(node: Any) -> list[Any]:
    weights = [v for v in node.variables if v.can_train] or list(node.variables)
    return [v for v in weights if v.dtype.startswith(("float", "bfloat"))]


class _Watcher:
    """The recording machinery shared by the Keras 3 and tf_keras callbacks."""

    def _setup(self, model: Any, every: str | int, update_ratio: bool, bins: int,
               layers: list[str] | None, diff: bool, min_refresh_s: float) -> None:
        if every != "epoch" and not (isinstance(every, int) and not isinstance(every, bool)
                                     and every > 0):
            raise ArgumentError(f"every={every!r}: pass 'epoch' or a number of steps >= 1.")
        if not isinstance(bins, int) or bins < 1:
            raise ArgumentError(f"bins={bins!r}: pass a number of histogram bins >= 1.")
        self.watched_model = model
        self.every = every
        self.update_ratio = bool(update_ratio)
        self.bins = bins
        self.keep_diff = bool(diff)
        self.min_refresh_s = float(min_refresh_s)
        self.history = TrainingHistory()
        self.diff = None
        self.replica_drift: list[tuple[int, str]] = []
        self._layer_filter = list(layers) if layers is not None else None
        self._layers: list[_Layer] = []
        self._start = None
        self._step = 0
        self._epoch = 0
        self._epoch_first_step = 0
        self.panel_factory: Callable[[Any], Any] | None = None
        """Makes :attr:`panel` (the widget layer's ``hubwidgets.watch`` sets it: the backend
        never imports widgets)."""
        self._running = False
        self.interrupted = False
        """Whether the last ``fit`` ended without reaching its end (an exception, Ctrl-C)."""
        # found again by explore(model): kept by the model's session, not on the model
        from .session import session_for
        session_for(model).watcher = self

    def forget_panel(self, panel: Any) -> None:
        """``panel`` was closed: the next :attr:`panel` is a new one."""
        if getattr(self, "_panel", None) is panel:
            self._panel = None

    def _notify(self, event: str) -> None:
        from .session import existing_session

        session = existing_session(self.watched_model)
        if session is not None:  # its views that follow training (the training panel)
            session.training_progressed(self, event)

    # -- the fit -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a ``fit`` of the watched model is running now.  A ``fit`` that raised
        (Ctrl-C, an error in a callback) never calls ``on_train_end``: the run is then ended
        here, the first time anyone asks after it (the panel, this property, the cell's end
        in IPython), with ``interrupted`` set and the start snapshot released."""
        if self._running and not _fit_running(self.watched_model):
            self._end(interrupted=True)
        return self._running

    @running.setter
    def running(self, value: bool) -> None:
        self._running = bool(value)

    def _begin(self) -> None:
        from .inspect import inspect

        model = self.watched_model
        tree = inspect(model)
        nodes = [n for n in tree if _pick_weights(n)]
        if self._layer_filter is not None:
            wanted = _find_layers(tree, self._layer_filter)
            keep = {id(n) for w in wanted for n in w.walk()}
            nodes = [n for n in nodes if id(n) in keep]
        self._layers = [_Layer(n.path, [reduce.watched_weight(v) for v in _pick_weights(n)])
                        for n in nodes]
        for layer in self._layers:
            if layer.path not in self.history.layers:
                self.history.layers.append(layer.path)
        if self.update_ratio:
            self._keep_previous()
        self._start = self._start_snapshot(model) if self.keep_diff else None
        self._running = True
        self.interrupted = False
        _end_after_the_cell(self)
        self._notify("begin")

    def _start_snapshot(self, model: Any) -> Any:
        """The start of fit, in host memory; streamed to a temporary file (deleted at the end
        of fit) when the memory guard says the copy would not fit."""
        import os
        import tempfile

        from .memory_guard import InsufficientMemoryError
        from .snapshot import snapshot

        try:
            return snapshot(model)
        except InsufficientMemoryError:
            handle, name = tempfile.mkstemp(prefix="hubwidgets-watch-", suffix=".npz")
            os.close(handle)
            self._start_file = name
            return snapshot(model, name)

    def _end(self, interrupted: bool = False) -> None:
        self._running = False
        self.interrupted = interrupted
        start, self._start = self._start, None  # released even if the diff below fails
        if start is not None:
            from .diff import diff

            try:
                self.diff = diff(start, self.watched_model)
            finally:
                del start
                self._drop_start_file()
        self._check_drift()
        self._notify("end")
        from .session import existing_session, trainable_layer_paths

        session = existing_session(self.watched_model)
        if session is not None:  # every open view follows; what training can change is read
            session.update("values", trainable_layer_paths(session.tree))

    def _drop_start_file(self) -> None:
        import os

        name = getattr(self, "_start_file", None)
        self._start_file = None
        if name and os.path.exists(name):
            os.remove(name)

    def _record(self, logs: dict[str, Any] | None) -> None:
        interval = self.history.intervals
        self.history.steps.append(self._step)
        self.history.epochs.append(self._epoch)
        for key, value in (logs or {}).items():
            try:
                number = float(np.asarray(value))
            except (TypeError, ValueError):
                continue
            series = self.history.logs.setdefault(key, [math.nan] * interval)
            series.append(number)
        for series in self.history.logs.values():
            if len(series) < interval + 1:
                series.append(math.nan)
        stats: dict[int, tuple[dict[str, Any], float, str]] = {}
        host = [layer for layer in self._layers if layer.host]
        for batch in reduce.host_batches(host, reduce.RECORD_BATCH_BYTES):
            stats.update(self._reduce_host(batch))
        for layer in self._layers:
            if not layer.host:
                stats[id(layer)] = self._reduce_on_device(layer)
        for layer in self._layers:
            record, ratio, note = stats[id(layer)]
            layer.last = record
            self.history.records.append(LayerRecord(
                interval=interval, step=self._step, epoch=self._epoch, path=layer.path,
                update_ratio=ratio, ratio_note=note, **record))
        self._notify("interval")

    # -- the previous values: a copy of what can train, a digest of what cannot ----------
    def _keep_previous(self) -> None:
        """At the start of fit: a copy of each weight that can train now, the digest of each
        frozen one; the host copy is first checked by the memory guard (nothing allocated
        when it refuses)."""
        from .memory_guard import ensure_fits

        weights = [w for layer in self._layers for w in layer.weights]
        copied = [w for w in weights if w.trains and w.host]
        ensure_fits(
            sum(w.nbytes for w in copied),
            f"hubwidgets.watch's copy of the previous values of the {len(copied)} weights "
            "that can train (for update ratios)",
            "pass update_ratio=False (no update ratios, no copy), or watch fewer layers: "
            "hw.watch(model, layers=['path/of/a/layer', ...])")
        for layer in self._layers:
            layer.last = None
            for w in layer.weights:
                w.previous = w.digest = w.sum_sq = None
        for batch in reduce.host_batches([layer for layer in self._layers if layer.host],
                                         reduce.RECORD_BATCH_BYTES):
            mine = [w for layer in batch for w in layer.weights]
            views = reduce.host_views(mine)
            frozen = [(w, v) for w, v in zip(mine, views, strict=True) if not w.trains]
            for (w, _), d in zip(frozen, reduce.digests([v for _, v in frozen]), strict=True):
                w.digest = d
            for w, v in zip(mine, views, strict=True):
                if w.trains:
                    w.previous = np.array(v, copy=True)
            del views
        for layer in self._layers:
            if not layer.host:
                for w in layer.weights:
                    if w.trains:
                        w.previous = reduce.device_copy(w.read)
                    else:
                        w.digest = reduce.device_digest(w.read)

    def _reduce_host(self, batch: list[_Layer]) -> dict[int, tuple[dict[str, Any], float, str]]:
        """Statistics and update ratios of a batch of host layers, from views of their
        buffers; each copy held is updated in place."""
        weights = [w for layer in batch for w in layer.weights]
        views = dict(zip(map(id, weights), reduce.host_views(weights), strict=True))
        moved: dict[int, tuple[float, float | None] | None] = {}
        if self.update_ratio:
            frozen = [w for w in weights if w.previous is None]
            for w, d in zip(frozen, reduce.digests([views[id(w)] for w in frozen]),
                            strict=True):
                moved[id(w)] = (0.0, None) if d == w.digest else None
                if d != w.digest:
                    w.digest, w.sum_sq = d, None
            for w in weights:
                if w.previous is not None:
                    moved[id(w)] = reduce.moved_and_kept(views[id(w)], w.previous)
        unchanged = {id(layer) for layer in batch if self.update_ratio and layer.last is not None
                     and all(w.previous is None and moved[id(w)] is not None
                             for w in layer.weights)}
        todo = [layer for layer in batch if id(layer) not in unchanged]
        fresh = reduce.layer_stats([[views[id(w)] for w in layer.weights] for layer in todo],
                                   self.bins)
        records = dict(zip(map(id, todo), fresh, strict=True))
        out = {}
        for layer in batch:
            # a layer whose weights were all frozen and are bit for bit what they were: the
            # figures of the last record (the digests proved it)
            record = records.get(id(layer)) or {
                k: v.copy() if isinstance(v, np.ndarray) else v for k, v in layer.last.items()}
            ratio, note = self._layer_ratio(layer, moved, lambda w: reduce.sum_of_squares(
                views[id(w)]))
            out[id(layer)] = (record, ratio, note)
        return out

    def _reduce_on_device(self, layer: _Layer) -> tuple[dict[str, Any], float, str]:
        """A layer on a GPU: reduced there; the copies held stay there."""
        record = reduce.device_stats([w.read for w in layer.weights], self.bins)
        moved: dict[int, tuple[float, float | None] | None] = {}
        if self.update_ratio:
            for w in layer.weights:
                if w.previous is not None:
                    moved[id(w)] = reduce.device_moved(w.read, w.previous)
                    w.previous = reduce.device_copy(w.read)
                    continue
                d = reduce.device_digest(w.read)
                moved[id(w)] = (0.0, None) if d == w.digest else None
                if d != w.digest:
                    w.digest, w.sum_sq = d, None
        ratio, note = self._layer_ratio(layer, moved,
                                        lambda w: reduce.device_sum_of_squares(w.read))
        return record, ratio, note

    def _layer_ratio(self, layer: _Layer, moved: dict[int, Any],
                     squares: Callable[[WatchedWeight], float]) -> tuple[float, str]:
        """‖Δw‖/‖w‖ of the layer: exactly 0 when no weight moved (a frozen one proved
        unchanged by its digest), NaN with the reason when a frozen weight changed."""
        if not self.update_ratio:
            return math.nan, reduce.NOT_RECORDED
        parts = [moved[id(w)] for w in layer.weights]
        if any(p is None for p in parts):
            return math.nan, reduce.FROZEN_CHANGED
        delta_sq = sum(p[0] for p in parts)
        if delta_sq == 0:
            return 0.0, ""
        before_sq = 0.0
        for w, (_, before) in zip(layer.weights, parts, strict=True):
            if before is None:  # frozen and unchanged: Σw² now is Σw² then
                if w.sum_sq is None:
                    w.sum_sq = squares(w)
                before = w.sum_sq
            before_sq += before
        return reduce.ratio(delta_sq, before_sq), ""

    @property
    def held_bytes(self) -> int:
        """Bytes of the copy of previous values held for update ratios: the weights that
        could train when ``fit`` began (0 with ``update_ratio=False``)."""
        return sum(w.held_bytes for layer in self._layers for w in layer.weights)

    def _check_drift(self) -> None:
        """Mirrored variables: every replica must hold the primary's bits."""
        from .adapters.common import replica_components

        interval = max(self.history.intervals - 1, 0)
        for layer in self._layers:
            for var in layer.variables:
                replicas = replica_components(var)  # one for sync-on-read (differs by design)
                if len(replicas) < 2:
                    continue
                first = np.asarray(replicas[0].numpy()).tobytes()
                if any(np.asarray(r.numpy()).tobytes() != first for r in replicas[1:]):
                    self.replica_drift.append((interval, layer.path))
                    warnings.warn(f"The replicas of a variable of {layer.path!r} hold different "
                                  "values: the mirrored copies drifted apart (the watcher reads "
                                  "the first replica).", ReplicaDriftWarning, stacklevel=2)

    # -- display -----------------------------------------------------------------------------
    @property
    def panel(self) -> Any:
        """The live :class:`~hubwidgets.TrainingPanel` of this watcher (created on first use)."""
        existing = getattr(self, "_panel", None)
        if existing is None:
            if self.panel_factory is None:
                raise RuntimeError("The training panel is a widget: call hubwidgets.watch "
                                   "(hubwidgets.widgets.training.watch) to display it.")
            existing = self._panel = self.panel_factory(self)
        return existing

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Displayed (the last expression of a cell): the live panel, with a text line."""
        return self.panel._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        every = "every epoch" if self.every == "epoch" else f"every {self.every} steps"
        return (f"<hubwidgets.watch {every}: {len(self.history.layers)} layers, "
                f"{self.history.intervals} intervals recorded>")


def _find_layers(tree: Any, layers: list[str]) -> list[Any]:
    """The nodes ``layers`` name; a name that is not there is refused (before ``fit``)."""
    found = []
    for path in layers:
        try:
            found.append(tree.find(path))
        except (KeyError, TypeError) as exc:
            reason = exc.args[0] if exc.args else exc
            raise HubWidgetsError(f"hubwidgets.watch(layers=[...]): {reason} Pass the paths or "
                                  "names of layers as the explorer shows them, or "
                                  "layers=None for every layer.") from None
    return found


def _fit_running(model: Any) -> bool:
    """Whether a ``fit`` (``fit_generator``) of ``model`` is on the stack of any thread now."""
    import sys

    for frame in list(sys._current_frames().values()):
        while frame is not None:
            if frame.f_code.co_name in ("fit", "fit_generator") and \
                    frame.f_locals.get("self") is model:
                return True
            frame = frame.f_back
    return False


def _end_after_the_cell(watcher: Any) -> None:
    """In IPython, end a run that its ``fit`` left without ending (an interrupted cell) when
    the cell finishes, so the panel stops saying "training"."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        return
    shell = get_ipython()
    if shell is None:
        return
    ref = weakref.ref(watcher)

    def after_cell(*_args: Any) -> None:
        live = ref()
        try:
            shell.events.unregister("post_run_cell", after_cell)
        except ValueError:
            pass
        if live is not None:
            live.running  # noqa: B018 - ends the run when its fit is gone

    shell.events.register("post_run_cell", after_cell)


# -- the two generations -----------------------------------------------------------------
_CLASSES: dict[tuple[str, bool], type] = {}


def _callback_class(generation: str, per_step: bool) -> type:
    """A ``keras.callbacks.Callback`` (or tf_keras') subclass; the per-step variant alone
    defines a batch hook, so an epoch watcher never makes Keras sync every batch."""
    key = (generation, per_step)
    if key in _CLASSES:
        return _CLASSES[key]
    if generation == "tf_keras":
        import tf_keras

        base = tf_keras.callbacks.Callback
    else:
        import keras

        base = keras.callbacks.Callback

    def on_train_begin(self, logs=None):
        self._begin()

    def on_train_end(self, logs=None):
        self._end()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_first_step = self._step

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch + 1
        if self.every == "epoch":
            self._record(logs)
        elif logs and any(k.startswith("val_") for k in logs):
            # the validation numbers of the epoch, on the last interval of it
            for key, value in logs.items():
                if key.startswith("val_") and self.history.intervals:
                    series = self.history.logs.setdefault(
                        key, [math.nan] * self.history.intervals)
                    series[-1] = float(np.asarray(value))

    def on_train_batch_end(self, batch, logs=None):
        # ``batch`` is the index of the epoch's last step run (steps_per_execution > 1 runs
        # several per call): record once when a multiple of ``every`` was reached
        step = max(self._epoch_first_step + int(batch) + 1, self._step + 1)
        crossed = step // self.every > self._step // self.every
        self._step = step
        if crossed:
            self._record(logs)

    namespace = {"on_train_begin": on_train_begin, "on_train_end": on_train_end,
                 "on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end,
                 "__doc__": watch.__doc__, "__module__": __name__}
    if per_step:
        namespace["on_train_batch_end"] = on_train_batch_end
    name = f"{'Step' if per_step else 'Epoch'}Watch{'TfKeras' if generation == 'tf_keras' else ''}"
    cls = type(name, (_Watcher, base), namespace)
    _CLASSES[key] = cls
    return cls


def watch(model: Any, every: str | int = "epoch", *, update_ratio: bool = True,
          bins: int = 32, layers: list[str] | None = None, diff: bool = True,
          min_refresh_s: float = 0.25) -> Any:
    """A Keras callback that records ``model``'s weights while it trains; pass it to
    ``model.fit(..., callbacks=[cb])``.  The last expression of a cell, it shows the live
    training panel (loss and metrics, each layer's weight distribution over time, and the
    update ratio ‖Δw‖/‖w‖ per layer on a log scale), updated while ``fit`` runs.

    Args:
        model: a Keras 3 or tf_keras model (hub.KerasLayer and HubLayer parts included); the
            callback is of the model's own generation.
        every: ``"epoch"``, or a number of training steps between records.
        update_ratio: record ‖w_t − w_{t−1}‖/‖w_{t−1}‖ per layer.  This needs the previous
            values: the watcher holds one copy of the watched weights that can train when
            ``fit`` begins, on their own device (a GPU's memory when they live there, host
            memory otherwise; the memory guard refuses a host copy that would not fit,
            before fit starts).  A frozen weight cannot move in fit, so no copy is kept:
            a SHA-256 digest of its bytes proves at each record that it did not move, and
            a layer whose weights did not move has a ratio of exactly 0.  If a frozen
            weight changed anyway (a callback wrote it, it was unfrozen during fit) the
            layer's ratio is NaN, with the reason in ``LayerRecord.ratio_note``.
            ``update_ratio=False`` holds no copy.  Records read the weights in place, a
            few layers at a time, so they hold no host copy of the model.
        bins: histogram bins per layer and interval.
        layers: paths or names of the layers (and what is below them) to record; default all
            layers that hold weights.
        diff: keep a host :class:`~hubwidgets.Snapshot` of the start of ``fit`` so that
            ``callback.diff`` is the :class:`~hubwidgets.WeightDiff` from the start of fit to
            its end (a second copy, in host memory, for the length of ``fit``); ``False``
            keeps none and leaves ``callback.diff`` None.
        min_refresh_s: the live panel redraws at most this often (the last state always).

    ``callback.history`` is a :class:`TrainingHistory` (``to_arrays()``, ``to_dataframe()``);
    under ``MirroredStrategy`` the first replica is read and the others are checked against
    it at the end of ``fit`` (``callback.replica_drift``).
    """
    from .adapters.keras import keras_generation

    generation = keras_generation(model)
    if generation is None:
        raise HubWidgetsError(
            f"hubwidgets.watch needs a Keras 3 or tf_keras model (the one you pass to fit), "
            f"not a {type(model).__name__}. Wrap a Hub module in hub.KerasLayer (tf_keras) or "
            "hubwidgets.HubLayer (Keras 3) inside a model first.")
    if not getattr(model, "weights", None):
        raise UnbuiltModelError(
            f"The model {getattr(model, 'name', '')!r} has no weights yet: fit would create "
            "them in its first step, too late to record where training started. Build it "
            "first, e.g. model(x[:1]) or model.build((None, ...)), then call "
            "hubwidgets.watch(model).")
    if layers is not None:
        from .inspect import inspect

        if isinstance(layers, str):
            raise HubWidgetsError(f"layers={layers!r}: pass a list of layer paths or names, "
                                  f"e.g. layers=[{layers!r}].")
        _find_layers(inspect(model), list(layers))
    per_step = every != "epoch"
    cls = _callback_class(generation, per_step)
    callback = cls()
    callback._setup(model, every, update_ratio, bins, layers, diff, min_refresh_s)
    return callback


def watcher_of(model: Any) -> Any | None:
    """The latest watcher created for ``model`` (or None)."""
    from .session import existing_session
    session = existing_session(model)
    return session.watcher if session is not None else None
