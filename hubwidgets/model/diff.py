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

from .errors import HubWidgetsError, ModelLoadError, NotFoundError
from .host_stats import dot_product
from .lora_audit import frozen_by_design
from .notes import BN_STATISTIC_NAMES, is_batch_norm_class
from .snapshot import LazyValues, Snapshot, live_snapshot

RANDOM_HINTS = ("Dropout", "Random", "Noise", "SeedGenerator")
ADAPT_CLASSES = ("Normalization", "Discretization", "StringLookup", "IntegerLookup",
                 "TextVectorization")


@dataclass(frozen=True)
class VariableDiff:
    """How one variable changed.

    ``changed`` compares the bits (a NaN that stays NaN is unchanged; -0.0 vs 0.0 is a
    change).  ``rel_change`` is ‖after − before‖ / ‖before‖ (``inf`` when before is all
    zeros and after is not), ``cosine`` the cosine similarity of the two values (NaN when one
    is all zeros or not numeric), ``trainable`` the flag as the model says now.  The figures
    are computed scaled by the largest magnitude (no overflow, even near float64's limit) and
    over the positions finite on both sides; ``nonfinite`` counts the others (inf or NaN).
    ``comparable`` is False when the two sides differ in shape or dtype (``before_kind``
    gives the first side's shape and dtype): then no figure is computed, and the summary
    lists the pair apart.
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
    comparable: bool = True
    before_kind: tuple[tuple[int, ...], str] | None = None
    nonfinite: int = 0
    delta_sq: float = field(default=0.0, repr=False)
    before_sq: float = field(default=0.0, repr=False)
    scale: float = field(default=1.0, repr=False)

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
    not_compared: int = 0
    """Variables of the node whose two sides differ in shape or dtype (left out of the
    figures)."""


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
                    a = acc.setdefault("/".join(parts[:depth]), [0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0])
                    a[0] += 1
                    a[1] += d.changed
                    a[8] += not d.comparable
                    a[2] += d.size
                    a[3] += d.size if d.changed else 0
                    # sums of squares in units of the node's largest scale (no overflow)
                    if d.scale > a[7] > 0:
                        a[4] *= (a[7] / d.scale) ** 2
                        a[5] *= (a[7] / d.scale) ** 2
                    if d.scale > a[7]:
                        a[7] = d.scale
                    unit = (d.scale / a[7]) ** 2 if a[7] > 0 else 0.0
                    a[4] += d.delta_sq * unit
                    a[5] += d.before_sq * unit
                    a[6] = max(a[6], d.max_abs_change if math.isfinite(d.max_abs_change) else 0)
            self._nodes = {p: NodeDiff(p, int(a[0]), int(a[1]), int(a[2]), int(a[3]),
                                       _ratio(a[4], a[5]) if a[8] < a[0] else math.nan,
                                       a[6] if a[8] < a[0] else math.nan, int(a[8]))
                           for p, a in acc.items()}
        return self._nodes

    def node(self, path: str) -> NodeDiff:
        """Totals of one layer / module (its path as in the tree)."""
        try:
            return self.nodes[path.strip("/")]
        except KeyError:
            raise NotFoundError(f"No layer or module {path!r} holds a compared variable. Known: "
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
        if not total and (self.only_before or self.only_after):
            lines.append("No variable has the same path on both sides: these are different "
                         "models, or their layers are named differently (variables are paired "
                         "by path, never by position).")
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
                rel, top = ((_num(n.rel_change), _num(n.max_abs_change)) if
                            n.not_compared < n.variables else ("other shape", "other shape"))
                note = f"  ({n.not_compared} of other shape or dtype)" if 0 < n.not_compared \
                    < n.variables else ""
                lines.append(f"{n.path.ljust(width)}  {f'{n.changed}/{n.variables}':>7}  "
                             f"{rel:>11}  {top:>12}{note}")
        reshaped = [d for d in self._results.values() if not d.comparable]
        if reshaped:
            lines.append(f"\nDifferent shape or dtype, not compared ({len(reshaped)}): " +
                         ", ".join(f"{d.path} {_kind(d.before_kind)} -> {_kind((d.shape, d.dtype))}"
                                   for d in reshaped[:10]) + (" ..." if len(reshaped) > 10 else ""))
        odd = [d for d in self._results.values() if d.nonfinite]
        if odd:
            lines.append("\nValues that are inf or NaN on a side, left out of the figures: " +
                         ", ".join(f"{d.path} ({d.nonfinite} of {d.size})" for d in odd[:10]))
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


# -- the two states compared ----------------------------------------------------------------
@dataclass
class _ComparedState:
    """One of the two states ``diff`` compares: its weights, how the summary names it, and
    the live model when it is one."""

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
    for path in a.values:
        other = pairs.get(path)
        if other is None:
            only_before.append(path)
            continue
        matched.add(other)
        # "trainable as the model says now": the live side, else the later side
        use_a = (second.model is None and first.model is not None) or other not in b.trainable
        flags, flag_path = (a, path) if use_a else (b, other)
        results[other] = _compare(other, _for_reading(a.values, path),
                                  _for_reading(b.values, other),
                                  trainable=bool(flags.trainable.get(flag_path, True)),
                                  can_train=bool(flags.can_train.get(flag_path, True)),
                                  owner=b.owners.get(other) or a.owners.get(path, ""))
    only_after = [p for p in b.values if p not in matched]
    hub_layers = {**a.hub_layers, **b.hub_layers}
    frozen_changed = [_frozen_reason(d, b.framework or a.framework, hub_layers.get(p, ""), live)
                      for p, d in results.items() if d.changed and not d.trainable
                      and d.comparable]
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


def _resolve(side: Any, other: Any) -> _ComparedState:
    if isinstance(side, Snapshot):
        return _ComparedState(side, f"snapshot of {side.root!r}")
    if isinstance(side, (str, os.PathLike)):
        return _resolve_path(os.fspath(side), other)
    snap = live_snapshot(side)  # read one variable at a time, as the comparison goes
    model = side.obj if hasattr(side, "root") and hasattr(side, "refresh") else side
    return _ComparedState(snap, f"live {snap.framework} {snap.root!r}", model=model)


def _resolve_path(path: str, other: Any) -> _ComparedState:
    lower = path.lower()
    if lower.endswith(".npz"):
        return _ComparedState(Snapshot.open(path), f"snapshot file {path!r}")  # read on demand
    if os.path.isfile(path + ".index") or lower.endswith(".index"):
        prefix = path[:-len(".index")] if lower.endswith(".index") else path
        return _ComparedState(_checkpoint_snapshot(prefix, _live(other, path)), f"checkpoint {path!r}")
    if lower.endswith(".weights.h5") or (lower.endswith((".h5", ".hdf5")) and
                                         os.path.isfile(path) and not _h5_has_model(path)):
        return _ComparedState(_weights_file_snapshot(path, _live(other, path)), f"weights {path!r}")
    return _ComparedState(live_snapshot(path), f"saved model {path!r}")


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
    return live_snapshot(clone)


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
    """A TF checkpoint's values, paired with ``model``'s variables by path: each value the
    checkpoint holds for the model (``tf.train.Checkpoint(model=...).write/save``, or
    ``model.save_weights`` in tf_keras) carries the variable's own name, which is matched to
    the live variables' as :func:`match_paths` matches two snapshots, never by position in
    the object graph (another model's checkpoint pairs nothing it does not name).  Values
    are read from the file one at a time, when compared."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    try:
        reader = tf.train.load_checkpoint(prefix)
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"Could not read the checkpoint {prefix!r}: {exc}. Pass the prefix "
                             "(the path without .index / .data-...) of an object-based "
                             "checkpoint.") from exc
    live = live_snapshot(model)
    names = _checkpoint_names(live, model)  # the name each live variable is saved under

    def values_below(start: int) -> dict[str, str]:
        """full name -> checkpoint key of every variable value below one object."""
        keys: dict[str, str] = {}
        seen, stack = {start}, [start]
        while stack:
            node = graph.nodes[stack.pop()]
            for attr in node.attributes:
                if attr.name == "VARIABLE_VALUE" and attr.full_name:
                    keys.setdefault(attr.full_name, attr.checkpoint_key)
            for ref in node.children:
                if ref.node_id not in seen and ref.local_name != "optimizer":
                    seen.add(ref.node_id)
                    stack.append(ref.node_id)
        return keys

    # the model is the checkpoint's root (save_weights), or one of its children (Checkpoint)
    starts = [0] + [ref.node_id for ref in graph.nodes[0].children
                    if ref.local_name != "optimizer"] if graph.nodes else []
    found = max((values_below(s) for s in starts), key=lambda k: len(set(k) & set(names)),
                default={})
    if not found:
        raise ModelLoadError(
            f"The checkpoint {prefix!r} holds no variable values. Pass the prefix of a "
            "checkpoint written with tf.train.Checkpoint(model=model).save or "
            "model.save_weights.")
    by_name = {name: path for path, name in names.items()}
    pairs = {n: n for n in found if n in by_name}
    if not pairs:  # the same model under another root name: the same names below the root
        below_live = _unique_below_root(list(by_name))
        below_saved = _unique_below_root(list(found))
        pairs = {n: below_live[k] for k, n in below_saved.items() if k in below_live}
    paired = {by_name[pairs[n]]: key for n, key in found.items() if n in pairs}
    paths = {p: paired[p] for p in live.values if p in paired}  # path -> key, model order
    for full_name, key in found.items():  # variables the model does not have: shown as on
        if full_name not in pairs:        # the checkpoint's side only
            paths[f"{live.root}/(checkpoint)/{full_name}"] = key
    specs: dict[str, tuple[tuple[int, ...], str, int]] = {}
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    for path, key in paths.items():
        dtype = np.dtype(dtypes[key].as_numpy_dtype) if dtypes[key] != tf.string \
            else np.dtype("S1")
        shape = tuple(shapes[key])
        specs[path] = (shape, dtype.name, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)

    def read(path: str) -> np.ndarray:
        return np.asarray(reader.get_tensor(paths[path]))

    return Snapshot(values=LazyValues(list(paths), read, specs), framework=live.framework,
                    root=live.root,
                    **{name: {p: f for p, f in getattr(live, name).items() if p in paths}
                       for name in ("trainable", "owners", "can_train", "hub_layers")})


def _unique_below_root(names: list[str]) -> dict[str, str]:
    """name below its root -> the name, for names whose part below the root is unique; none
    when the names do not all start with one root (tf_keras names start at the layer)."""
    if len({name.split("/", 1)[0] for name in names}) != 1:
        return {}
    seen: dict[str, list[str]] = {}
    for name in names:
        if "/" in name:
            seen.setdefault(_below_root(name), []).append(name)
    return {k: v[0] for k, v in seen.items() if len(v) == 1}


def _checkpoint_names(live: Snapshot, model: Any) -> dict[str, str]:
    """Variable path -> the name a checkpoint records for it (``full_name``): the variable's
    ``path`` in Keras 3, its ``name`` without ``:0`` in tf_keras and TensorFlow."""
    from .inspect import inspect

    out: dict[str, str] = {}
    for var in inspect(model).variables():
        if var.path not in live.values:
            continue
        raw = var.variable
        name = getattr(raw, "path", None) if not hasattr(raw, "_shared_name") else None
        name = name or getattr(raw, "_shared_name", None) or str(getattr(raw, "name", ""))
        out[var.path] = name.split(":")[0]
    return out


# -- numbers -------------------------------------------------------------------------------
def _compare(path: str, before: np.ndarray, after: np.ndarray, trainable: bool, can_train: bool,
             owner: str) -> VariableDiff:
    size = int(after.size)
    common = dict(path=path, trainable=trainable, can_train=can_train, owner=owner, size=size,
                  shape=tuple(after.shape), dtype=after.dtype.name)
    if before.shape != after.shape or before.dtype != after.dtype:
        return VariableDiff(changed=True, rel_change=math.nan, max_abs_change=math.nan,
                            cosine=math.nan, comparable=False,
                            before_kind=(tuple(before.shape), before.dtype.name), **common)
    changed = not _same_bits(before, after)
    if before.dtype.kind not in "fiub" and before.dtype.name != "bfloat16":
        return VariableDiff(changed=changed, rel_change=math.nan, max_abs_change=math.nan,
                            cosine=math.nan, **common)
    flat_x, flat_y = before.reshape(-1), after.reshape(-1)
    chunks = range(0, size, _CHUNK)  # float64 work in chunks: never a float64 copy of it all

    def chunk(start: int) -> tuple[np.ndarray, np.ndarray]:
        x = flat_x[start:start + _CHUNK].astype(np.float64)
        y = flat_y[start:start + _CHUNK].astype(np.float64)
        finite = np.isfinite(x) & np.isfinite(y)
        return (x, y) if finite.all() else (x[finite], y[finite])

    # the figures are of the values finite on both sides (the rest are counted), scaled by
    # the largest magnitude first, so that squares and differences never overflow
    nonfinite, scale = 0, 0.0
    for start in chunks:
        x, y = chunk(start)
        nonfinite += min(_CHUNK, size - start) - x.size
        if x.size:
            scale = max(scale, float(np.max(np.abs(x))), float(np.max(np.abs(y))))
    if nonfinite:
        common["nonfinite"] = nonfinite
    counted = size - nonfinite
    unit = scale if scale > 0 else 1.0
    before_sq = after_sq = delta_sq = dot = biggest = 0.0
    for start in chunks:
        x, y = chunk(start)
        x /= unit
        y /= unit
        before_sq += dot_product(x, x)
        if changed:
            after_sq += dot_product(y, y)
            dot += dot_product(x, y)
            y -= x
            delta_sq += dot_product(y, y)
            if y.size:
                biggest = max(biggest, float(np.max(np.abs(y))))
    if not changed:
        return VariableDiff(changed=False, rel_change=0.0, max_abs_change=0.0,
                            cosine=1.0 if before_sq > 0 else math.nan, before_sq=before_sq,
                            scale=unit, **common)
    denom = math.sqrt(before_sq) * math.sqrt(after_sq)
    return VariableDiff(changed=True,
                        rel_change=_ratio(delta_sq, before_sq) if counted else math.nan,
                        max_abs_change=biggest * unit if counted else math.nan,
                        cosine=min(1.0, max(-1.0, dot / denom)) if denom > 0 else math.nan,
                        delta_sq=delta_sq, before_sq=before_sq, scale=unit, **common)


_CHUNK = 1 << 16
"""Values compared at a time (float64 temporaries of 512 KiB each: few enough pieces that a
5 GB model is not compared in Python-sized steps)."""


def _same_bits(before: Any, after: Any) -> bool:
    """Whether two values of one shape and dtype hold the same bytes (compared in pieces:
    no copy of either, and a file's value is read a piece at a time)."""
    if before.dtype.kind == "O":
        return np.asarray(before).tolist() == np.asarray(after).tolist()
    x, y = before.reshape(-1), after.reshape(-1)
    step = _CHUNK * 8

    def raw(piece: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(piece).view(np.uint8)

    return all(np.array_equal(raw(x[i:i + step]), raw(y[i:i + step]))
               for i in range(0, int(x.size), step))


def _for_reading(values: Any, path: str) -> Any:
    """A value for comparing only: in place or piece by piece where the side can (a live
    model, a snapshot file), else the value itself."""
    read = getattr(values, "for_reading", None)
    return read(path) if read is not None else values[path]


def _ratio(delta_sq: float, before_sq: float) -> float:
    if before_sq > 0:
        return math.sqrt(delta_sq / before_sq)
    return 0.0 if delta_sq == 0 else math.inf


def _kind(kind: tuple[tuple[int, ...], str] | None) -> str:
    shape, dtype = kind if kind is not None else ((), "?")
    return f"{tuple(shape)} {dtype}"


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
