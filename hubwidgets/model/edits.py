"""Edit a live model's weights, with undo: ``scale_weights``, ``reset_weights``,
``prune_weights``, ``add_noise``, ``restore``, ``undo``, ``redo``.

Rules:

- ``target`` is what :func:`hubwidgets.freeze` takes (a layer or variable path, a name, or a
  regular expression), resolved by ``freeze.matching_nodes``; every variable below the
  matched nodes is edited.  Every edit returns the refreshed tree.
- Edits change values, never ``trainable`` flags.  A mirrored variable is written on every
  replica (each replica gets the same new value).  Variables inside a ``HubLayer`` or
  ``hub.KerasLayer`` are the module's own variables, edited in place.
- All or nothing: every new value is computed and checked before the first write, and a
  write that fails (a read-only variable) puts back what was already written, then raises
  :class:`EditError`.
- Each edit records one undo step holding only the previous values of the variables it
  touched (host copies; one copy for a mirrored variable whose replicas agree).  Undo and
  redo swap those values with the variables' current ones, so a step always holds one copy.
  The history of a model keeps its steps within a memory budget (default: the model's
  weight bytes; ``undo_history(model).budget_bytes`` changes it).  The oldest steps are
  dropped first, each with an :class:`UndoHistoryWarning`; a new edit clears the redo steps.
"""

from __future__ import annotations

import math
import numbers
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import HubWidgetsError


class EditError(HubWidgetsError, ValueError):
    """An edit that was refused; nothing was changed."""


class UndoHistoryWarning(UserWarning):
    """An undo step was dropped (the history's memory budget), or could not be kept."""


@dataclass
class _Change:
    """One variable's other values: what an undo (or, once undone, a redo) writes back.
    Undo and redo swap them with the variable's current values, so a step holds one copy."""

    path: str
    components: list[Any] = field(repr=False)  # the tf.Variables written (one per replica)
    before: list[np.ndarray] = field(repr=False)  # one array, or one per replica

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.before)


@dataclass
class EditStep:
    """One edit: what it was (``description``, as Python) and the values it replaced."""

    description: str
    changes: list[_Change] = field(repr=False)

    @property
    def nbytes(self) -> int:
        """Host memory this step holds."""
        return sum(c.nbytes for c in self.changes)

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.changes]


@dataclass
class EditHistory:
    """The undo and redo steps of one model.  ``budget_bytes``: the most memory the steps may
    hold (None: the model's weight bytes, measured at each edit)."""

    undo_steps: list[EditStep] = field(default_factory=list)
    redo_steps: list[EditStep] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    budget_bytes: int | None = None

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.undo_steps + self.redo_steps)

    def _trim(self, budget: int) -> None:
        while self.nbytes > budget and (self.undo_steps or self.redo_steps):
            stack = self.undo_steps if self.undo_steps else self.redo_steps
            step = stack.pop(0)
            kind = "undo" if stack is self.undo_steps else "redo"
            self.dropped.append(step.description)
            warnings.warn(
                f"Undo history: dropped the oldest {kind} step ({step.description}, "
                f"{step.nbytes:,} bytes) to stay within the budget of {budget:,} bytes; it "
                f"can no longer be {'undone' if kind == 'undo' else 'redone'}. Raise "
                "hubwidgets.undo_history(model).budget_bytes to keep more.",
                UndoHistoryWarning, stacklevel=_user_stacklevel())


_HISTORIES: dict[int, EditHistory] = {}


def undo_history(model: Any) -> EditHistory:
    """The undo history of ``model`` (created empty on first use; forgotten with the model).
    A :class:`ModelTree` stands for the model it describes."""
    from .tree import ModelTree

    if isinstance(model, ModelTree):
        model = model.obj
    key = id(model)
    if key not in _HISTORIES:
        _HISTORIES[key] = EditHistory()
        try:
            weakref.finalize(model, _HISTORIES.pop, key, None)
        except TypeError:  # not weakly referable: kept for the session
            pass
    return _HISTORIES[key]


# -- the edits ------------------------------------------------------------------------------
def scale_weights(model: Any, target: str, factor: float) -> Any:
    """Multiply every variable of ``target`` by ``factor``, in the variable's own dtype
    (``w * factor`` with ``factor`` cast to that dtype: bit for bit what numpy gives)."""
    value = _finite_number(factor, "factor")

    def scaled(old: np.ndarray, _var: Any) -> np.ndarray:
        with np.errstate(over="ignore"):
            cast = np.asarray(value, dtype=old.dtype)
        if not np.isfinite(cast):
            raise EditError(f"factor {factor!r} is not finite in {old.dtype}; nothing changed.")
        return old * cast

    return _edit(model, target, scaled, f"scale_weights(model, {target!r}, {factor!r})")


def prune_weights(model: Any, target: str, fraction: float) -> Any:
    """Set the ``floor(fraction * size)`` smallest-magnitude values of each variable of
    ``target`` to zero.  Ties are broken by position (the earlier value, in C order, goes
    first), so the result is deterministic; NaN counts as the largest magnitude."""
    value = _finite_number(fraction, "fraction")
    if not 0.0 <= value <= 1.0:
        raise EditError(f"fraction must be between 0 and 1, got {fraction!r}; nothing changed.")

    def pruned(old: np.ndarray, _var: Any) -> np.ndarray:
        flat = old.reshape(-1)
        count = math.floor(value * flat.size)
        order = np.argsort(np.abs(flat.astype(np.float64)), kind="stable")
        new = flat.copy()
        new[order[:count]] = 0
        return new.reshape(old.shape)

    return _edit(model, target, pruned, f"prune_weights(model, {target!r}, {fraction!r})")


def add_noise(model: Any, target: str, std: float, seed: int | None = None,
              relative: bool = False) -> Any:
    """Add Gaussian noise to every variable of ``target``.  Absolute by default: each value
    gets N(0, std**2); with ``relative=True`` the noise of each variable is ``std`` times that
    variable's own standard deviation (a constant variable then gets none).  The noise is
    drawn in float64 from ``numpy.random.default_rng(seed)`` (variables in model order), added
    in float64, and rounded once to the variable's dtype."""
    scale = _finite_number(std, "std")
    if scale < 0:
        raise EditError(f"std must be >= 0, got {std!r}; nothing changed.")
    rng = np.random.default_rng(seed)

    def noisy(old: np.ndarray, _var: Any) -> np.ndarray:
        wide = old.astype(np.float64)
        sigma = scale * float(wide.std()) if relative and wide.size else scale
        return (wide + rng.normal(0.0, sigma, size=old.shape)).astype(old.dtype)

    kind = ", relative=True" if relative else ""
    return _edit(model, target, noisy,
                 f"add_noise(model, {target!r}, {std!r}, seed={seed!r}{kind})")


def reset_weights(model: Any, target: str) -> Any:
    """Re-initialize every variable of ``target`` with its layer's own initializer
    (``layer.<name>_initializer``: ``kernel_initializer``, ``bias_initializer``,
    ``gamma_initializer``, ``moving_variance_initializer``...), Keras 3 and tf_keras alike.
    A variable with no known initializer (a restored Hub variable, a plain ``tf.Module``'s)
    is refused with an :class:`EditError`, and nothing changes.

    Seeded or unseeded, an initializer is called as Keras calls it: tf_keras' unseeded
    initializers give the same values at every call, so there a reset brings back the
    layer's first initial values; Keras 3's unseeded ones draw new values."""
    from .inspect import inspect

    owners = _owners(inspect(model))

    def initial(old: np.ndarray, info: Any) -> np.ndarray:
        owner = owners.get(info.key)
        init = _initializer(owner.obj if owner is not None else None, info.variable)
        if init is None:
            raise EditError(
                f"{info.path!r} has no known initializer (a restored Hub or SavedModel "
                "variable keeps only its values); nothing changed. Reset only Keras layers, "
                "or restore a snapshot taken before training.")
        with warnings.catch_warnings():  # tf_keras: "unseeded ... identical values", as said
            warnings.filterwarnings("ignore", message=".*unseeded.*", category=UserWarning)
            value = init(tuple(old.shape), dtype=str(old.dtype))
        return np.asarray(_to_numpy(value), dtype=old.dtype).reshape(old.shape)

    return _edit(model, target, initial, f"reset_weights(model, {target!r})")


def restore(model: Any, snapshot: Any) -> Any:
    """Put every variable of a :class:`hubwidgets.Snapshot` back, bit for bit (one undo step).
    Every path, shape and dtype is checked before anything is written."""
    values = getattr(snapshot, "values", None)
    if not isinstance(values, dict):
        raise EditError(f"restore takes a hubwidgets.Snapshot (hw.snapshot(model)), got "
                        f"{type(snapshot).__name__}; nothing changed.")
    from .inspect import inspect

    _refuse_paths(model)
    tree = inspect(model)
    live = {v.path: v for v in tree.variables()}
    problems = [f"{p!r} has shape {tuple(live[p].shape)} / {live[p].dtype} in the model but "
                 f"{values[p].shape} / {values[p].dtype} in the snapshot" for p in values
                 if p in live and not _same_kind(live[p], values[p])]
    problems += [f"{p!r} is not a variable of the model" for p in values if p not in live]
    if problems:
        raise EditError("Nothing was restored: " + "; ".join(problems[:5]) +
                        ". Restore into the model the snapshot was taken from.")
    return _apply(model, tree, [live[p] for p in values], lambda old, info: values[info.path],
                  "restore(model, snapshot)", allow_any_dtype=True)


def undo(model: Any) -> Any:
    """Put back the values the last edit replaced, bit for bit."""
    return _move(model, undo=True)


def redo(model: Any) -> Any:
    """Apply again the last edit that was undone, bit for bit."""
    return _move(model, undo=False)


# -- internals ------------------------------------------------------------------------------
def _refuse_paths(model: Any) -> None:
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        raise EditError("Edits change a live model, not a file: load it first (model = "
                        "keras.models.load_model(path), or hub.load(path)) and pass the "
                        "model; nothing changed.")


def _same_kind(info: Any, value: np.ndarray) -> bool:
    """Whether a snapshot's array fits the variable: same shape and dtype (a tf.string
    variable is kept as bytes in a snapshot)."""
    if tuple(info.shape) != value.shape:
        return False
    return info.dtype == value.dtype.name or (info.dtype == "string" and value.dtype.kind in "SO")


def _finite_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise EditError(f"{what} must be a number, got {value!r}; nothing changed.")
    out = float(value)
    if not math.isfinite(out):
        raise EditError(f"{what} must be finite, got {value!r}; nothing changed.")
    return out


def _edit(model: Any, target: str, compute: Callable[[np.ndarray, Any], np.ndarray],
          description: str) -> Any:
    from .freeze import matching_nodes
    from .inspect import inspect

    _refuse_paths(model)
    if not isinstance(target, str) or not target:
        raise EditError(f"target must be a non-empty layer or variable path, name or regular "
                        f"expression, got {target!r}; nothing changed.")
    tree = inspect(model)
    try:
        nodes = matching_nodes(tree, [target])
    except KeyError:
        raise EditError(f"{target!r} matches no layer or variable of the model; nothing "
                        "changed. hw.inspect(model) lists the paths.") from None
    seen: set[int] = set()
    variables = []
    for node in nodes:
        for var in node.all_variables():
            if var.key not in seen:
                seen.add(var.key)
                variables.append(var)
    if not variables:
        raise EditError(f"{target!r} holds no variables; nothing changed.")
    return _apply(model, tree, variables, compute, description)


def _apply(model: Any, tree: Any, variables: list[Any],
           compute: Callable[[np.ndarray, Any], np.ndarray], description: str,
           allow_any_dtype: bool = False) -> Any:
    import tensorflow as tf

    from .adapters.common import replica_components

    if not allow_any_dtype:
        bad = [f"{v.path} ({v.dtype})" for v in variables if not tf.as_dtype(v.dtype).is_floating]
        if bad:
            raise EditError("Edits apply to float variables; the target holds "
                            + ", ".join(bad[:5]) + ". Pick a narrower target; nothing changed.")
    changes, news = [], []
    for v in variables:  # everything computed and checked before the first write
        components = replica_components(v.variable)
        before = _host_values(components)
        if not all(callable(getattr(c, "assign", None)) for c in components):
            raise EditError(f"{v.path} cannot be written (read-only); nothing changed.")
        new = np.asarray(compute(before[0], v))
        if new.shape != before[0].shape or new.dtype != before[0].dtype:
            raise EditError(f"{v.path}: the new value is {new.shape} {new.dtype}, the variable "
                            f"{before[0].shape} {before[0].dtype}; nothing changed.")
        changes.append(_Change(v.path, components, before))
        news.append(new)
    _write(changes, [[n] for n in news])
    _record(model, tree, EditStep(description, changes))
    return _refreshed(tree)


def _refreshed(tree: Any) -> Any:
    """The tree after an edit; the model's open views (and their statistics) follow."""
    from .session import notify_changed

    tree.refresh()
    notify_changed(tree.obj, "values")
    return tree


def _write(changes: list[_Change], values: list[list[np.ndarray]]) -> None:
    """Assign ``values`` (one array, or one per replica) to each change's components; on a
    failure put back every value already written, then raise EditError."""
    done: list[_Change] = []
    try:
        for change, value in zip(changes, values, strict=True):
            for i, component in enumerate(change.components):
                component.assign(value[i] if len(value) > 1 else value[0])
            done.append(change)
    except Exception as exc:  # noqa: BLE001 - any write failure rolls back
        failed = changes[len(done)]
        for change in done + [failed]:
            for i, component in enumerate(change.components):
                try:
                    before = change.before[i] if len(change.before) > 1 else change.before[0]
                    component.assign(before)
                except Exception:  # noqa: BLE001 - the one that failed cannot be written
                    pass
        raise EditError(f"{failed.path} cannot be written ({type(exc).__name__}: {exc}); "
                        "every variable already written was put back, nothing changed.") \
            from exc


def _record(model: Any, tree: Any, step: EditStep) -> None:
    history = undo_history(model)
    history.redo_steps.clear()
    budget = _budget(history, tree)
    if step.nbytes > budget:
        history.dropped.append(step.description)
        warnings.warn(f"Undo history: {step.description} replaced {step.nbytes:,} bytes, more "
                      f"than the budget of {budget:,} bytes; it cannot be undone. Raise "
                      "hubwidgets.undo_history(model).budget_bytes to keep it.",
                      UndoHistoryWarning, stacklevel=_user_stacklevel())
        return
    history.undo_steps.append(step)
    history._trim(budget)


def _budget(history: EditHistory, tree: Any) -> int:
    if history.budget_bytes is not None:
        return int(history.budget_bytes)
    return sum(int(v.nbytes) for v in tree.variables())


def _move(model: Any, undo: bool) -> Any:
    from .inspect import inspect

    history = undo_history(model)
    source = history.undo_steps if undo else history.redo_steps
    if not source:
        dropped = f" ({len(history.dropped)} older step(s) were dropped)" if history.dropped \
            else ""
        raise EditError(f"Nothing to {'undo' if undo else 'redo'}{dropped}.")
    step = source[-1]
    current = [_host_values(c.components) for c in step.changes]
    # all or nothing: a failed write puts the current values back
    _write([_Change(c.path, c.components, now) for c, now in zip(step.changes, current,
                                                                strict=True)],
           [c.before for c in step.changes])
    for change, values in zip(step.changes, current, strict=True):
        change.before = values  # what the next redo (or undo) puts back
    source.pop()
    (history.redo_steps if undo else history.undo_steps).append(step)
    tree = inspect(model)
    history._trim(_budget(history, tree))  # the budget may have been lowered since
    return _refreshed(tree)


def _host_values(components: list[Any]) -> list[np.ndarray]:
    """Host copies of each replica's value; one copy when the replicas agree bit for bit."""
    values = [np.array(c.numpy(), copy=True) for c in components]
    if all(np.array_equal(v.view(np.uint8), values[0].view(np.uint8)) for v in values[1:]):
        return values[:1]
    return values


def _user_stacklevel() -> int:
    """The stacklevel of the first caller outside hubwidgets (warnings point at user code)."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and "hubwidgets" in frame.f_code.co_filename.replace("\\", "/") \
            .split("/site-packages/")[-1].split("/"):
        frame, level = frame.f_back, level + 1
    return level


def _owners(tree: Any) -> dict[int, Any]:
    """variable key -> the node (layer) whose own variables include it."""
    out: dict[int, Any] = {}
    for node in tree.root.walk():
        for var in node.variables:
            out.setdefault(var.key, node)
    return out


def _initializer(layer: Any, var: Any) -> Callable[..., Any] | None:
    """The layer's initializer for ``var`` (``<short name>_initializer`` on the layer or its
    cell), or None."""
    from .adapters.common import short_name

    if layer is None:
        return None
    name = short_name(var)
    for owner in (layer, getattr(layer, "cell", None)):
        init = getattr(owner, f"{name}_initializer", None) if owner is not None else None
        if callable(init):
            return init
    return None


def _to_numpy(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


# -- the same edits in plain TensorFlow / Keras, for teaching ------------------------------
_PLAIN = {
    "scale_weights": "layer.set_weights([w * {0!r} for w in layer.get_weights()])",
    "prune_weights": "layer.set_weights([prune(w, {0!r}) for w in layer.get_weights()])",
    "add_noise": "layer.set_weights([noisy(w, {0!r}) for w in layer.get_weights()])",
}
_HELPERS = {
    "prune_weights": [
        "def prune(w, fraction):  # the smallest |w| to zero; ties in C order",
        "    w = w.copy()",
        "    order = np.argsort(np.abs(w.astype('float64')), axis=None, kind='stable')",
        "    w.flat[order[:math.floor(fraction * w.size)]] = 0",
        "    return w"],
    "add_noise": [
        "rng = np.random.default_rng({seed!r})",
        "def noisy(w, std):",
        "    wide = w.astype('float64')",
        "    sigma = {sigma}",
        "    return (wide + rng.normal(0.0, sigma, w.shape)).astype(w.dtype)"],
}


def edit_code(model: Any, action: str, target: str, *args: Any, var: str = "model",
              **kwargs: Any) -> tuple[str, str]:
    """The hubwidgets call for an edit, and plain Keras / TensorFlow code with the same
    effect (for teaching), e.g. ``edit_code(model, "scale_weights", "d1", 2.0)`` ->
    ``('hubwidgets.scale_weights(model, 'd1', 2.0)', "layer = model.get_layer('d1')\\n
    layer.set_weights([w * 2.0 for w in layer.get_weights()])")``.  Keras layers are reached
    with ``get_layer``; anything else (a Hub module's part, one variable) through its
    variables (``hubwidgets.inspect(model).find(path).all_variables()``)."""
    from .freeze import matching_nodes
    from .inspect import inspect

    if action not in ("scale_weights", "prune_weights", "add_noise", "reset_weights"):
        raise EditError(f"edit_code knows scale_weights, prune_weights, add_noise and "
                        f"reset_weights, not {action!r}.")
    shown = ", ".join([repr(target)] + [repr(a) for a in args]
                      + [f"{k}={v!r}" for k, v in kwargs.items()])
    call = f"hubwidgets.{action}({var}, {shown})"
    tree = inspect(model)
    try:
        nodes = matching_nodes(tree, [target])
    except KeyError:
        raise EditError(f"{target!r} matches no layer or variable of the model.") from None
    lines = {"prune_weights": ["import math", "import numpy as np"],
             "add_noise": ["import numpy as np"]}.get(action, [])
    if action == "add_noise":
        seed, relative = kwargs.get("seed", args[1] if len(args) > 1 else None), \
            kwargs.get("relative", args[2] if len(args) > 2 else False)
        sigma = "std * float(wide.std()) if wide.size else std" if relative else "std"
        lines += [h.format(seed=seed, sigma=sigma) for h in _HELPERS[action]]
    elif action in _HELPERS:
        lines += _HELPERS[action]
    owners = _owners(tree) if action == "reset_weights" else {}
    for node in nodes:
        getter = _getter(tree, node, var)
        if getter is not None and action != "reset_weights":
            lines += [f"layer = {getter}", _PLAIN[action].format(*args[:1])]
            continue
        relative = node.path.split("/", 1)[1] if "/" in node.path else node.path
        if action == "reset_weights":
            lines += _reset_lines(tree, node, owners, var)
            continue
        helper = {"scale_weights": f"w * {args[0]!r}", "prune_weights": f"prune(w, {args[0]!r})",
                  "add_noise": f"noisy(w, {args[0]!r})"}[action]
        lines += [f"for info in hubwidgets.inspect({var}).find({relative!r}).all_variables():",
                  "    w = info.variable.numpy()",
                  f"    info.variable.assign({helper})"]
    return call, "\n".join(lines)


def _reset_lines(tree: Any, node: Any, owners: dict[int, Any], var: str) -> list[str]:
    from .adapters.common import short_name

    lines, current = [], None
    for info in node.all_variables():
        owner_node = owners.get(info.key)
        layer = owner_node.obj if owner_node is not None else None
        name = short_name(info.variable)
        owner = _getter(tree, owner_node, var)
        if _initializer(layer, info.variable) is None or owner is None:
            lines.append(f"# {info.path}: no initializer reachable from plain code; left as is")
            continue
        if owner != current:
            lines.append(f"layer = {owner}")
            current = owner
        lines.append(f"layer.{name}.assign(layer.{name}_initializer(layer.{name}.shape, "
                     f"dtype=layer.{name}.dtype))")
    return lines


def _getter(tree: Any, node: Any, var: str) -> str | None:
    """``model.get_layer('a').get_layer('b')`` for a Keras layer node, else None."""
    if node is None or node.class_name == "Variable":
        return None
    if node is tree.root:
        return var
    if not callable(getattr(node.obj, "get_weights", None)):
        return None
    chain, parent = [], tree.root
    for name in node.path.split("/")[1:]:
        try:
            child = parent.obj.get_layer(name)
        except (AttributeError, ValueError, TypeError):
            return None
        chain.append(name)
        parent = next((c for c in parent.children if c.obj is child), None)
        if parent is None:
            return None
    if parent is not node:
        return None
    return var + "".join(f".get_layer({name!r})" for name in chain)
