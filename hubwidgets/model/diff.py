"""``hubwidgets.diff``: what moved between two states of a model, and why.

Each side is a live model, a :class:`~hubwidgets.Snapshot`, or a path (``.keras``, a full
``.h5`` model, a ``.weights.h5`` / weights-only ``.h5`` file, a SavedModel directory, a TF
checkpoint prefix, or a saved snapshot ``.npz``).  Variables are matched by
``VariableInfo.path``; when the two roots have different names (a model and its reloaded
copy), by the path below the root.

The result is a mapping ``path -> VariableDiff`` with per-node totals, the variables found on
one side only, and an audit: frozen or non-trainable variables that changed (with the reason
when it is known, e.g. BatchNormalization moving statistics, and how to stop it), and
trainable variables that did not move (with the likely reasons).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .errors import HubWidgetsError, ModelLoadError
from .lora_audit import frozen_by_design
from .notes import BN_STATISTIC_NAMES, is_batch_norm_class
from .snapshot import Snapshot, snapshot

RANDOM_HINTS = ("Dropout", "Random", "Noise", "SeedGenerator")
ADAPT_CLASSES = ("Normalization", "Discretization", "StringLookup", "IntegerLookup",
                 "TextVectorization")


@dataclass(frozen=True)
class VariableDiff:
    """How one variable changed.

    ``changed`` compares the bits (a NaN that stays NaN is unchanged; -0.0 vs 0.0 is a
    change).  ``rel_change`` is ‖after − before‖ / ‖before‖ (``inf`` when before is all
    zeros and after is not), ``cosine`` the cosine similarity of the two values (NaN when one
    is all zeros or not numeric), ``trainable`` the flag as the model says now.
    """

    path: str
    changed: bool
    rel_change: float
    max_abs_change: float
    cosine: float
    trainable: bool
    can_train: bool = True
    owner: str = ""
    size: int = 0
    shape: tuple[int, ...] = ()
    dtype: str = ""
    delta_sq: float = field(default=0.0, repr=False)
    before_sq: float = field(default=0.0, repr=False)

    @property
    def frozen(self) -> bool:
        """A weight that could train but is set not to."""
        return self.can_train and not self.trainable


@dataclass(frozen=True)
class NodeDiff:
    """Totals of a layer / module: its variables and everything below it."""

    path: str
    variables: int
    changed: int
    params: int
    changed_params: int
    rel_change: float
    max_abs_change: float


@dataclass(frozen=True)
class AuditItem:
    """One finding of the audit: a variable, why it behaved so, and what to do."""

    path: str
    reason: str
    fix: str = ""
    certain: bool = False

    def __str__(self) -> str:
        text = f"{self.path}: {self.reason}"
        return f"{text} To stop it: {self.fix}" if self.fix else text


class WeightDiff(Mapping):
    """The per-variable comparison of two states of a model: ``diff[path]`` is a
    :class:`VariableDiff`.  See :func:`diff`."""

    def __init__(self, results: dict[str, VariableDiff], only_before: list[str],
                 only_after: list[str], frozen_changed: list[AuditItem],
                 trainable_unchanged: list[AuditItem], labels: tuple[str, str] = ("", "")
                 ) -> None:
        self._results = results
        self.only_before = only_before
        """Paths of variables found only on the first side."""
        self.only_after = only_after
        """Paths of variables found only on the second side."""
        self.frozen_changed = frozen_changed
        """Audit: frozen or non-trainable variables that changed, with reasons."""
        self.trainable_unchanged = trainable_unchanged
        """Audit: trainable variables that did not move, with likely reasons."""
        self.labels = labels
        self._nodes: dict[str, NodeDiff] | None = None
        self.frozen_by_design: list[AuditItem] = []
        """Audit: LoRA base kernels and quantized integer codes that stayed bit-identical,
        and why (set by :func:`diff` from the live model)."""

    # -- mapping -----------------------------------------------------------------------------
    def __getitem__(self, path: str) -> VariableDiff:
        return self._results[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    # -- views -------------------------------------------------------------------------------
    @property
    def changed(self) -> list[str]:
        """Paths whose bits changed, in model order."""
        return [p for p, d in self._results.items() if d.changed]

    @property
    def unchanged(self) -> list[str]:
        """Paths whose bits are identical on both sides."""
        return [p for p, d in self._results.items() if not d.changed]

    @property
    def nodes(self) -> dict[str, NodeDiff]:
        """Per-node totals: every layer / module path above a variable -> :class:`NodeDiff`."""
        if self._nodes is None:
            acc: dict[str, list[float]] = {}
            for path, d in self._results.items():
                parts = path.split("/")
                for depth in range(1, len(parts)):
                    a = acc.setdefault("/".join(parts[:depth]), [0, 0, 0, 0, 0.0, 0.0, 0.0])
                    a[0] += 1
                    a[1] += d.changed
                    a[2] += d.size
                    a[3] += d.size if d.changed else 0
                    a[4] += d.delta_sq
                    a[5] += d.before_sq
                    a[6] = max(a[6], d.max_abs_change if math.isfinite(d.max_abs_change) else 0)
            self._nodes = {p: NodeDiff(p, int(a[0]), int(a[1]), int(a[2]), int(a[3]),
                                       _ratio(a[4], a[5]), a[6]) for p, a in acc.items()}
        return self._nodes

    def node(self, path: str) -> NodeDiff:
        """Totals of one layer / module (its path as in the tree)."""
        try:
            return self.nodes[path.strip("/")]
        except KeyError:
            raise KeyError(f"No layer or module {path!r} holds a compared variable. Known: "
                           f"{', '.join(list(self.nodes)[:8])}") from None

    def to_dataframe(self) -> Any:
        """The per-variable results as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        cols = ("changed", "rel_change", "max_abs_change", "cosine", "trainable", "can_train",
                "owner", "size", "dtype")
        return pd.DataFrame([{"path": p, **{c: getattr(d, c) for c in cols}}
                             for p, d in self._results.items()]).set_index("path")

    # -- text --------------------------------------------------------------------------------
    def summary(self, depth: int = 1) -> str:
        """The diff as text: counts, per-node totals ``depth`` levels below the root, the
        one-side-only variables, and the audit."""
        lines = []
        before, after = self.labels
        if before or after:
            lines.append(f"Compared {before} -> {after}")
        total = len(self)
        n_changed = len(self.changed)
        params = sum(d.size for d in self._results.values())
        moved = sum(d.size for d in self._results.values() if d.changed)
        lines.append(f"{n_changed} of {total} variables changed ({moved:,} of {params:,} "
                     "parameters).")
        frozen = [d for d in self._results.values() if d.frozen]
        if frozen:
            still = sum(not d.changed for d in frozen)
            lines.append(f"Frozen variables unchanged bit for bit: {still} of {len(frozen)}.")
        rows = [n for p, n in self.nodes.items() if p.count("/") == depth]
        if rows:
            width = max(len(n.path) for n in rows)
            lines.append("")
            lines.append(f"{'layer'.ljust(width)}  changed  rel. change  max |change|")
            for n in rows:
                lines.append(f"{n.path.ljust(width)}  {f'{n.changed}/{n.variables}':>7}  "
                             f"{_num(n.rel_change):>11}  {_num(n.max_abs_change):>12}")
        if self.only_before:
            lines.append(f"\nOnly before ({len(self.only_before)}): " +
                         ", ".join(self.only_before[:10]) + (" ..." if len(self.only_before) > 10
                                                             else ""))
        if self.only_after:
            lines.append(f"\nOnly after ({len(self.only_after)}): " +
                         ", ".join(self.only_after[:10]) + (" ..." if len(self.only_after) > 10
                                                            else ""))
        lines.append("")
        lines.append(f"Frozen or non-trainable variables that changed: {len(self.frozen_changed)}")
        lines.extend(f"  {item}" for item in self.frozen_changed)
        lines.append(f"Trainable variables that did not move: {len(self.trainable_unchanged)}")
        lines.extend(f"  {item}" for item in self.trainable_unchanged)
        if self.frozen_by_design:
            lines.append(f"Frozen by design, unchanged bit for bit: {len(self.frozen_by_design)}")
            lines.extend(f"  {item}" for item in self.frozen_by_design)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"WeightDiff(variables={len(self)}, changed={len(self.changed)}, "
                f"only_before={len(self.only_before)}, only_after={len(self.only_after)}, "
                f"frozen_changed={len(self.frozen_changed)}, "
                f"trainable_unchanged={len(self.trainable_unchanged)})")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.summary())


# -- sides ---------------------------------------------------------------------------------
@dataclass
class _Side:
    snap: Snapshot
    label: str
    model: Any = None  # the live object, when the side is one


def diff(before: Any, after: Any) -> WeightDiff:
    """Compare two states of a model variable by variable.

    ``before`` / ``after``: a live model (anything :func:`hubwidgets.inspect` accepts), a
    :class:`~hubwidgets.Snapshot`, or a path: ``.keras``, a full-model ``.h5``, a SavedModel
    directory, a saved snapshot ``.npz``; a ``.weights.h5`` / weights-only ``.h5`` file or a
    TF checkpoint prefix when the other side is a live model (the weights are read into a
    clone of it, or matched through its object graph; the live model is never changed).

    Returns a :class:`WeightDiff`; ``print(d.summary())`` tells what moved and why.
    """
    first = _resolve(before, after)
    second = _resolve(after, before)
    a, b = first.snap, second.snap
    pairs = match_paths(list(a.values), list(b.values), same_root=a.root == b.root)
    results: dict[str, VariableDiff] = {}
    only_before: list[str] = []
    matched: set[str] = set()
    live = second.model if second.model is not None else first.model
    for path, value in a.values.items():
        other = pairs.get(path)
        if other is None:
            only_before.append(path)
            continue
        matched.add(other)
        # "trainable as the model says now": the live side, else the later side
        use_a = (second.model is None and first.model is not None) or other not in b.trainable
        flags, flag_path = (a, path) if use_a else (b, other)
        results[other] = _compare(other, value, b.values[other],
                                  trainable=bool(flags.trainable.get(flag_path, True)),
                                  can_train=bool(flags.can_train.get(flag_path, True)),
                                  owner=b.owners.get(other) or a.owners.get(path, ""))
    only_after = [p for p in b.values if p not in matched]
    hub_layers = {**a.hub_layers, **b.hub_layers}
    frozen_changed = [_frozen_reason(d, b.framework or a.framework, hub_layers.get(p, ""), live)
                      for p, d in results.items() if d.changed and not d.trainable]
    moved_any = any(d.changed for d in results.values())
    trainable_unchanged = [_still_reason(d, live, moved_any)
                           for d in results.values() if d.trainable and not d.changed]
    out = WeightDiff(results, only_before, only_after, frozen_changed, trainable_unchanged,
                     labels=(first.label, second.label))
    out.frozen_by_design = [AuditItem(p, why, certain=True)  # LoRA bases, quantized codes
                            for p, why in frozen_by_design(live, results)]
    return out


def match_paths(first: list[str], second: list[str], same_root: bool) -> dict[str, str]:
    """Pairs of variable paths (first -> second): the same path; else, when the roots differ
    (a model and its reloaded copy), the same path below the root; else, when that matches
    nothing (a Hub module on its own and inside a model), the same path once leading
    components of the longer one are dropped, where that is unique."""
    if same_root:
        exact = set(second)
        return {p: p for p in first if p in exact}
    below = {_below_root(p): p for p in second}
    pairs = {p: below[_below_root(p)] for p in first if _below_root(p) in below}
    if pairs:
        return pairs
    return _suffix_pairs([_below_root(p) for p in first], [_below_root(p) for p in second],
                         first, second)


def _suffix_pairs(short_a: list[str], short_b: list[str], first: list[str],
                  second: list[str]) -> dict[str, str]:
    def suffixes(path: str) -> list[str]:
        parts = path.split("/")
        return ["/".join(parts[i:]) for i in range(len(parts))]

    index_b: dict[str, list[int]] = {}
    for j, p in enumerate(short_b):
        for suffix in suffixes(p):
            index_b.setdefault(suffix, []).append(j)
    index_a: dict[str, list[int]] = {}
    for i, p in enumerate(short_a):
        for suffix in suffixes(p):
            index_a.setdefault(suffix, []).append(i)
    pairs: dict[str, str] = {}
    for i, p in enumerate(short_a):
        hits = index_b.get(p, [])
        if len(hits) == 1:  # first's path is a unique tail of one of second's
            pairs[first[i]] = second[hits[0]]
    if pairs:
        return pairs
    for j, p in enumerate(short_b):
        hits = index_a.get(p, [])
        if len(hits) == 1:
            pairs[first[hits[0]]] = second[j]
    return pairs


def _below_root(path: str) -> str:
    return path.split("/", 1)[1] if "/" in path else path


def _resolve(side: Any, other: Any) -> _Side:
    if isinstance(side, Snapshot):
        return _Side(side, f"snapshot of {side.root!r}")
    if isinstance(side, (str, os.PathLike)):
        return _resolve_path(os.fspath(side), other)
    snap = snapshot(side)
    model = side.obj if hasattr(side, "root") and hasattr(side, "refresh") else side
    return _Side(snap, f"live {snap.framework} {snap.root!r}", model=model)


def _resolve_path(path: str, other: Any) -> _Side:
    lower = path.lower()
    if lower.endswith(".npz"):
        return _Side(Snapshot.load(path), f"snapshot file {path!r}")
    if os.path.isfile(path + ".index") or lower.endswith(".index"):
        prefix = path[:-len(".index")] if lower.endswith(".index") else path
        return _Side(_checkpoint_snapshot(prefix, _live(other, path)), f"checkpoint {path!r}")
    if lower.endswith(".weights.h5") or (lower.endswith((".h5", ".hdf5")) and
                                         os.path.isfile(path) and not _h5_has_model(path)):
        return _Side(_weights_file_snapshot(path, _live(other, path)), f"weights {path!r}")
    return _Side(snapshot(path), f"saved model {path!r}")


def _live(other: Any, path: str) -> Any:
    if other is None or isinstance(other, (Snapshot, str, os.PathLike)):
        raise HubWidgetsError(
            f"{path!r} holds weights only, without the model's structure, so they can only be "
            "compared with a live model: pass the model as the other side, e.g. "
            f"hubwidgets.diff(model, {path!r}).")
    return other.obj if hasattr(other, "refresh") and hasattr(other, "root") else other


def _h5_has_model(path: str) -> bool:
    import h5py

    with h5py.File(path, "r") as f:
        return "model_config" in f.attrs


def _weights_file_snapshot(path: str, model: Any) -> Snapshot:
    """The weights of ``path`` read into a clone of ``model`` (the model itself is untouched)."""
    if not os.path.isfile(path):
        raise ModelLoadError(f"No weights file at {path!r}. Check the path.")
    clone = _clone(model, path)
    try:
        with warnings.catch_warnings():  # the file's optimizer state does not concern a diff
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            clone.load_weights(path)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for mismatched files
        raise ModelLoadError(
            f"Could not load {path!r} into a copy of the model: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. Pass the model these "
            "weights were saved from.") from exc
    return snapshot(clone)


def _clone(model: Any, path: str) -> Any:
    module = type(model).__module__
    try:
        if module.startswith("tf_keras"):
            import tf_keras

            clone = tf_keras.models.clone_model(model)
        else:
            import keras

            clone = keras.models.clone_model(model)
    except Exception as exc:  # noqa: BLE001
        raise HubWidgetsError(
            f"To read the weights file {path!r} hubwidgets loads it into a copy of the model, "
            f"but this model cannot be cloned ({type(exc).__name__}: {exc}). Load it yourself "
            "into a second instance: other = build_model(); other.load_weights(path); "
            "hubwidgets.diff(model, other).") from exc
    if hasattr(model, "name") and getattr(clone, "name", None) != model.name:
        try:
            clone._name = model.name
        except AttributeError:  # pragma: no cover - matched below the root then
            pass
    return clone


def _checkpoint_snapshot(prefix: str, model: Any) -> Snapshot:
    """A TF checkpoint's values matched to ``model``'s variables by walking the checkpoint's
    object graph beside the live one (as TensorFlow's own restore does): written by
    ``tf.train.Checkpoint(model=...).write/save`` or ``model.save_weights`` (tf_keras)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2
    from tensorflow.python.checkpoint import graph_view

    from .adapters.common import variable_key
    from .inspect import inspect

    try:
        reader = tf.train.load_checkpoint(prefix)
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"Could not read the checkpoint {prefix!r}: {exc}. Pass the prefix "
                             "(the path without .index / .data-...) of an object-based "
                             "checkpoint.") from exc
    view = graph_view.ObjectGraphView(model)

    def walk(start: int) -> dict[int, str]:
        keys: dict[int, str] = {}
        seen = {start}
        stack = [(start, model)]
        while stack:
            node_id, obj = stack.pop()
            node = graph.nodes[node_id]
            for attr in node.attributes:
                if attr.name == "VARIABLE_VALUE":
                    keys.setdefault(variable_key(obj), attr.checkpoint_key)
            try:
                children = view.children(obj)
            except Exception:  # noqa: BLE001 - objects that cannot list children
                continue
            for ref in node.children:
                child = children.get(ref.local_name)
                if child is not None and ref.node_id not in seen:
                    seen.add(ref.node_id)
                    stack.append((ref.node_id, child))
        return keys

    # the model is the checkpoint's root (save_weights), or one of its children (Checkpoint)
    starts = [0] + [ref.node_id for ref in graph.nodes[0].children] if graph.nodes else []
    keys = max((walk(s) for s in starts), key=len, default={})
    live = snapshot(model)
    values: dict[str, np.ndarray] = {}
    for var in inspect(model).variables():
        key = keys.get(variable_key(var.variable))
        if key is not None:
            values[var.path] = np.asarray(reader.get_tensor(key))
    if not values:
        raise ModelLoadError(
            f"The checkpoint {prefix!r} holds none of this model's variables. Pass the model "
            "it was written from (tf.train.Checkpoint(model=model).save or model.save_weights).")
    return Snapshot(values=values, framework=live.framework, root=live.root,
                    **{name: {p: f for p, f in getattr(live, name).items() if p in values}
                       for name in ("trainable", "owners", "can_train", "hub_layers")})


# -- numbers -------------------------------------------------------------------------------
def _compare(path: str, before: np.ndarray, after: np.ndarray, trainable: bool, can_train: bool,
             owner: str) -> VariableDiff:
    size = int(after.size)
    common = dict(path=path, trainable=trainable, can_train=can_train, owner=owner, size=size,
                  shape=tuple(after.shape), dtype=after.dtype.name)
    if before.shape != after.shape or before.dtype != after.dtype:
        return VariableDiff(changed=True, rel_change=math.nan, max_abs_change=math.nan,
                            cosine=math.nan, **common)
    changed = before.tobytes() != after.tobytes()
    if before.dtype.kind not in "fiub" and before.dtype.name != "bfloat16":
        return VariableDiff(changed=changed, rel_change=math.nan, max_abs_change=math.nan,
                            cosine=math.nan, **common)
    if not changed:
        sq = float(np.sum(np.square(before.astype(np.float64))))
        return VariableDiff(changed=False, rel_change=0.0, max_abs_change=0.0,
                            cosine=1.0 if sq > 0 else math.nan, before_sq=sq, **common)
    x = before.astype(np.float64).ravel()
    y = after.astype(np.float64).ravel()
    delta = y - x
    delta_sq = float(delta @ delta)
    before_sq = float(x @ x)
    after_sq = float(y @ y)
    denom = math.sqrt(before_sq * after_sq)
    return VariableDiff(changed=True, rel_change=_ratio(delta_sq, before_sq),
                        max_abs_change=float(np.max(np.abs(delta))) if size else 0.0,
                        cosine=float(x @ y) / denom if denom > 0 else math.nan,
                        delta_sq=delta_sq, before_sq=before_sq, **common)


def _ratio(delta_sq: float, before_sq: float) -> float:
    if before_sq > 0:
        return math.sqrt(delta_sq / before_sq)
    return 0.0 if delta_sq == 0 else math.inf


def _num(x: float) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return "0" if x == 0 else f"{x:.3g}"


# -- the audit -----------------------------------------------------------------------------
def _frozen_reason(d: VariableDiff, framework: str, hub_layer: str, live: Any) -> AuditItem:
    name = d.path.rsplit("/", 1)[-1]
    layer = d.path.rsplit("/", 1)[0]
    if name in BN_STATISTIC_NAMES or (is_batch_norm_class(d.owner) and not d.can_train):
        why = ("BatchNormalization moving statistics: they are not trained by the optimizer "
               "but updated on every training step while the layer runs in training mode.")
        if hub_layer:
            fix = (f"run the Hub module in inference mode: build {hub_layer.rsplit('/', 1)[-1]!r}"
                   " with trainable=False (hub.KerasLayer / HubLayer then call it with "
                   "training=False), or call it with training=False.")
        elif "tf_keras" in framework:
            fix = (f"call the layer (or the frozen base that holds {layer!r}) with "
                   "training=False, e.g. x = base(x, training=False).")
        else:
            fix = (f"freeze the BatchNormalization layer itself (hw.freeze(model, {layer!r}) or "
                   "layer.trainable = False): in Keras 3 a frozen BatchNormalization runs in "
                   "inference mode and keeps its statistics. Compile again after freezing.")
        return AuditItem(d.path, why, fix, certain=True)
    if any(h in d.owner for h in RANDOM_HINTS) or "seed" in name:
        return AuditItem(d.path, f"random-number state of {d.owner or 'a random layer'}: it "
                         "advances on every call in training mode (expected).", certain=True)
    if d.owner in ADAPT_CLASSES and not d.can_train:
        return AuditItem(d.path, f"state of a {d.owner} layer, set by adapt(): it changed "
                         "because adapt() ran again.", "do not call adapt() after training "
                         "starts.", certain=True)
    if d.can_train:
        from .compile_state import needs_compile

        stale = live is not None and needs_compile(live)
        why = ("the variable is frozen now, but "
               + ("the model was compiled before the freeze, so training still updated it."
                  if stale else "it was trainable when training ran: it was probably frozen "
                  "after compile() (training keeps the trainable set compile() recorded), or "
                  "frozen only after fit."))
        return AuditItem(d.path, why, "freeze before training and call model.compile(...) "
                         "again after any freeze.", certain=stale)
    return AuditItem(d.path, f"a non-trainable variable of {d.owner or 'the model'} changed: "
                     "code other than the optimizer assigned it (the layer's call, a callback, "
                     "set_weights or load_weights).")


def _still_reason(d: VariableDiff, live: Any, moved_any: bool) -> AuditItem:
    if not moved_any:
        return AuditItem(d.path, "nothing in the model changed: training did not run between "
                         "the two states (or ran with 0 steps).")
    model = live
    optimizer = getattr(model, "optimizer", None) if model is not None else None
    if optimizer is not None:
        lr = _learning_rate(optimizer)
        if lr == 0:
            return AuditItem(d.path, "the optimizer's learning rate is 0.", "set a learning "
                             "rate > 0 and compile again.", certain=True)
        from .compile_state import needs_compile

        if needs_compile(model):
            return AuditItem(d.path, "the model was compiled before it was made trainable "
                             "(unfrozen after compile): training used the trainable set "
                             "compile() recorded.", "call model.compile(...) again after "
                             "unfreezing.", certain=True)
        if _optimizer_missed(optimizer, model, d.path):
            return AuditItem(d.path, "the optimizer was built before this variable was "
                             "unfrozen and does not track it.", "call model.compile(...) "
                             "again (a new optimizer) after unfreezing.", certain=True)
    return AuditItem(d.path, "likely no gradient reached it: its layer does not feed the loss, "
                     "or the path goes through a non-differentiable op (argmax, a cast to int, "
                     "stop_gradient), or the gradient is exactly 0 (dead ReLUs); else a "
                     "learning rate of 0 or an optimizer built before the unfreeze.")


def _learning_rate(optimizer: Any) -> float | None:
    try:
        lr = optimizer.learning_rate
        if callable(lr) and not hasattr(lr, "numpy"):
            return None  # a schedule: varies
        return float(np.asarray(lr.numpy() if hasattr(lr, "numpy") else lr))
    except Exception:  # noqa: BLE001 - optimizers of both generations, schedules
        return None


def _optimizer_missed(optimizer: Any, model: Any, path: str) -> bool:
    """Keras 3: the optimizer was built with a variable list that lacks this variable."""
    tracked = getattr(optimizer, "_trainable_variables", None)
    if not getattr(optimizer, "built", False) or not tracked:
        return False
    from .adapters.common import variable_key
    from .inspect import inspect

    try:
        var = inspect(model).find_variable(path)
    except KeyError:
        return False
    return variable_key(var.variable) not in {variable_key(v) for v in tracked}
