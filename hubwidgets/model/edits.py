"""Edit a live model's weights, with undo: ``scale_weights``, ``reset_weights``,
``prune_weights``, ``add_noise`` (each made by :func:`edit_function` from its entry in
:mod:`hubwidgets.model.edit_specs`, where a new edit is added), ``undo``, ``redo``
(``restore``, the one edit that takes a snapshot, is in :mod:`hubwidgets.model.snapshot`, on
top of this module's ``_apply``).

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
- The history lives on the model's :class:`~hubwidgets.model.session.ModelSession` (one per
  live model, dropped with it).  Its step descriptions name the model as the session's
  ``var_name`` does.  The explorer's "restore" reads the values each variable had before its
  first edit from the undo steps' own copies (``EditHistory.originals``), inside the same
  budget (default there: twice the weight bytes, room for the originals and the steps).

The code shown for an edit (``edit_code``, re-exported here) is written by
:mod:`hubwidgets.model.codegen`; the look-ups both need (the session, each variable's layer
and its initializer) are in :mod:`hubwidgets.model.edit_targets`; :class:`EditError` is in
:mod:`hubwidgets.model.errors`.
"""

from __future__ import annotations

import hashlib
import inspect
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .codegen import describe_call, edit_action_code
from .codegen import edit_code as edit_code  # the public name's old home, for its callers
from .edit_specs import Compute, edit_spec
from .edit_targets import edit_session
from .errors import EditError, HubWidgetsWarning, UndoHistoryWarning
from .lora_edits import fine_tuning_plan
from .matching import matching_nodes


@dataclass
class _Change:
    """One variable's other values: what an undo (or, once undone, a redo) writes back.
    Undo and redo swap them with the variable's current values, so a step holds one copy."""

    path: str
    components: list[Any] = field(repr=False)  # the tf.Variables written (one per replica)
    before: list[np.ndarray] = field(repr=False)  # one array, or one per replica
    first: bool = False  # its undo puts back the history's ``originals`` of the variable
    restores: bool = False  # it wrote those originals back (the explorer's restore)
    written: bytes = b""  # digest of the values the edit (or the last undo/redo) wrote

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
    hold (None: the model's weight bytes, measured at each edit; twice that with
    ``keep_originals``).

    With ``keep_originals`` (:meth:`start_keeping_originals`, called by the explorer at its
    first edit), the history also keeps, for each variable edited since, its values before
    its first edit (``originals``, what the explorer's "restore" puts back).  They are the
    arrays of that edit's own undo step, not a second copy, and count in ``nbytes`` and the
    budget once; once that edit is undone the variable holds them again and no copy is kept
    (a redo takes them back).  Values that could not be kept within the budget are
    named in ``lost_originals``."""

    undo_steps: list[EditStep] = field(default_factory=list)
    redo_steps: list[EditStep] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    budget_bytes: int | None = None
    keep_originals: bool = False
    originals: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False)
    lost_originals: set[str] = field(default_factory=set)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "budget_bytes" and value is not None:  # checked when set, not mid-edit
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise EditError(f"budget_bytes is a whole number of bytes, 0 or more (None: the "
                                f"model's weight bytes); got {value!r}.")
            value = int(value)
        super().__setattr__(name, value)

    @property
    def nbytes(self) -> int:
        """Host memory the steps and originals hold (an array shared by both counted once)."""
        arrays = {id(a): a for s in self.undo_steps + self.redo_steps for c in s.changes
                  for a in c.before}
        arrays.update((id(a), a) for values in self.originals.values() for a in values)
        return sum(a.nbytes for a in arrays.values())

    def start_keeping_originals(self) -> None:
        """From the next edit on, keep each edited variable's values before its first edit
        (what the explorer's "restore" puts back; ``keep_originals``)."""
        self.keep_originals = True

    def record(self, step: EditStep, written: list[np.ndarray], budget: int) -> None:
        """Add ``step``, an edit just written (``written``: the values it wrote, one array
        list per change), as the newest undo step; the redo steps go.  Keeps the originals
        of variables edited for the first time, and drops the oldest steps beyond
        ``budget`` bytes (with an :class:`UndoHistoryWarning`)."""
        self.redo_steps.clear()
        for change, new in zip(step.changes, written, strict=True):
            kept = self.originals.get(change.path)
            if kept is not None and len(kept) == 1 and new is kept[0]:  # before_first_edit's
                del self.originals[change.path]  # the variable holds them again
                change.restores = True
        new_paths = [c.path for c in step.changes if c.path not in self.originals
                     and c.path not in self.lost_originals] if self.keep_originals else []
        if step.nbytes > budget:
            self.dropped.append(step.description)
            self.lost_originals.update(new_paths)
            restorable = " or restored" if new_paths else ""
            warnings.warn(f"Undo history: {step.description} replaced {step.nbytes:,} bytes, "
                          f"more than the budget of {budget:,} bytes; it cannot be undone"
                          f"{restorable}. Raise hubwidgets.undo_history(model).budget_bytes "
                          "to keep it.", UndoHistoryWarning, stacklevel=_user_stacklevel())
            self._trim(budget)  # the budget may have been lowered: older steps obey it too
            return
        self.undo_steps.append(step)
        for change in step.changes:  # the step's own arrays: no second copy
            if change.path in new_paths:
                self.originals[change.path] = change.before
                change.first = True
        self._trim(budget)

    def moved(self, undo: bool, replaced: list[list[np.ndarray]], budget: int) -> EditStep:
        """Move the newest undo step (``undo``) or redo step to the other stack, after its
        values were written back; ``replaced``: the values that write replaced, one array
        list per change (what the next redo, or undo, puts back).  Returns the step."""
        source, target = ((self.undo_steps, self.redo_steps) if undo
                          else (self.redo_steps, self.undo_steps))
        step = source[-1]
        for change, values in zip(step.changes, replaced, strict=True):
            change.written = _digest(change.before)
            change.before = values
            if (change.first or change.restores) and change.path not in self.lost_originals:
                if undo == change.first:  # the variable holds its original values again
                    self.originals.pop(change.path, None)
                else:  # the values this move replaced are the originals
                    self.originals[change.path] = values
        source.pop()
        target.append(step)
        self._trim(budget)  # the budget may have been lowered since
        return step

    def _trim(self, budget: int) -> None:
        """Drop the oldest steps until the history fits ``budget``; the originals go before
        the newest step does (its undo is the one most wanted)."""
        while self.nbytes > budget and len(self.undo_steps) + len(self.redo_steps) > 1:
            self._drop_oldest(budget)
        if self.originals and self.nbytes > budget:
            self._lose_originals(list(self.originals), budget)
        while self.nbytes > budget and (self.undo_steps or self.redo_steps):
            self._drop_oldest(budget)

    def _drop_oldest(self, budget: int) -> None:
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

    def _lose_originals(self, paths: list[str], budget: int) -> None:
        for path in paths:
            self.originals.pop(path, None)
        self.lost_originals.update(paths)
        warnings.warn(
            f"Undo history: the values before the first edit of {len(paths)} variable(s) "
            f"({', '.join(paths[:3])}{', ...' if len(paths) > 3 else ''}) do not fit the "
            f"budget of {budget:,} bytes and were not kept; they can no longer be restored. "
            "Raise hubwidgets.undo_history(model).budget_bytes to keep them.",
            UndoHistoryWarning, stacklevel=_user_stacklevel())


def undo_history(model: Any) -> EditHistory:
    """The undo history of ``model``, kept on its :class:`ModelSession` (created empty on
    first use; dropped with the model).  A :class:`ModelTree` or a session stands for the
    model it describes."""
    session = edit_session(model)
    if session.edit_history is None:
        session.edit_history = EditHistory()
    return session.edit_history


# -- the edits: one function per entry of the table (edit_specs.EDITS) ----------------------
def edit_function(name: str) -> Callable[..., Any]:
    """``hubwidgets.<name>(model, target, ...)`` for the edit ``name`` of the table: its
    parameters are its spec's (``make_compute``'s after the tree), its docstring the spec's.
    Required arguments are recorded positionally, the others by keyword where given."""
    spec = edit_spec(name)

    def run(model: Any, target: str, *args: Any, **kwargs: Any) -> Any:
        arguments = spec.arguments(args, kwargs)
        positional = tuple(arguments[f.name] for f in spec.fields)
        given = {p.name: arguments[p.name] for p in spec.parameters
                 if p.default is not inspect.Parameter.empty
                 and arguments[p.name] is not p.default}
        return _edit(model, spec.name, target, *positional, **given)

    run.__name__ = run.__qualname__ = spec.name
    run.__doc__ = spec.doc
    run.__module__ = __name__
    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("target", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + list(spec.parameters))
    return run


scale_weights = edit_function("scale_weights")
prune_weights = edit_function("prune_weights")
add_noise = edit_function("add_noise")
reset_weights = edit_function("reset_weights")


def undo(model: Any, force: bool = False) -> Any:
    """Put back the values the last edit replaced, bit for bit.

    When a variable of that edit changed since (``fit`` trained it, code assigned it), an
    undo would throw those changes away: it is refused with an :class:`EditError` naming the
    variables, and nothing changes.  ``force=True`` undoes anyway (the later changes are
    lost; a redo does not bring them back)."""
    return _move(model, undo=True, force=force)


def redo(model: Any, force: bool = False) -> Any:
    """Apply again the last edit that was undone, bit for bit.  Refused, as :func:`undo`
    is, when a variable changed since the undo (``force=True`` redoes anyway)."""
    return _move(model, undo=False, force=force)


def edit_with_code(model: Any, action: str, target: str, *args: Any, var: str | None = None,
                   **kwargs: Any) -> tuple[str, str]:
    """Run an edit and return its code, as :func:`edit_code` gives it, from one look at the
    model's structure (what the explorer's edit buttons call)."""
    session = edit_session(model)
    code = edit_action_code(session.tree, action, target, args, kwargs, var or session.var_name)
    _edit_session(session, action, target, args, kwargs)
    return code


# -- internals ------------------------------------------------------------------------------
def _edit(model: Any, action: str, target: str, *args: Any, **kwargs: Any) -> Any:
    session = edit_session(model)
    return _edit_session(session, action, target, args, kwargs)


def _edit_session(session: Any, action: str, target: str, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> Any:
    tree = session.tree  # brought up to date by edit_session: no second look at the structure
    compute = edit_spec(action).make_compute(tree, *args, **kwargs)
    if not isinstance(target, str) or not target:
        raise EditError(f"target must be a non-empty layer or variable path, name or regular "
                        f"expression, got {target!r}; nothing changed.")
    try:
        nodes = matching_nodes(tree, [target])
    except KeyError as exc:
        detail = str(exc.args[0]) if exc.args else ""
        if "valid regular expression" in detail:
            raise EditError(f"{target!r} is an invalid pattern: it names no layer or variable "
                            f"and is not a valid regular expression ({detail.split('(', 1)[-1]}"
                            .rstrip(". ") + "; nothing changed. Escape special characters "
                            "(re.escape) or pass a path from hw.inspect(model).") from None
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
    # LoRA and quantized layers: what the edit means there (or a refusal), see lora_edits
    variables, compute = fine_tuning_plan(tree, action, nodes, variables, compute, args)
    return _apply(session, variables, compute,
                  describe_call(action, session.var_name, target, args, kwargs),
                  unchanged_warning=edit_spec(action).unchanged_warning)


def _apply(session: Any, variables: list[Any], compute: Compute, description: str,
           allow_any_dtype: bool = False, unchanged_warning: str = "") -> Any:
    """Compute every new value, check them all, then write them as one undo step.
    ``unchanged_warning`` (an :class:`EditSpec`'s): when no value changed, write nothing,
    record nothing, and warn with it."""
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
        with np.errstate(over="ignore", invalid="ignore"):  # refused below, not warned
            new = np.asarray(compute(before[0], v))
        if new.shape != before[0].shape or new.dtype != before[0].dtype:
            raise EditError(f"{v.path}: the new value is {new.shape} {new.dtype}, the variable "
                            f"{before[0].shape} {before[0].dtype}; nothing changed.")
        if not allow_any_dtype:
            _check_finite(v.path, before[0], new, description)
        changes.append(_Change(v.path, components, before))
        news.append(new)
    if unchanged_warning and all(
            _digest([n]) == _digest(c.before) for c, n in zip(changes, news, strict=True)):
        warnings.warn(f"{description} changed nothing: {unchanged_warning} No undo step was "
                      "recorded.", HubWidgetsWarning, stacklevel=_user_stacklevel())
        return session.tree
    _write(changes, [[n] for n in news])
    for change, new in zip(changes, news, strict=True):
        change.written = _digest([new])
    _record(session, EditStep(description, changes), news)
    # the model's open views follow; only the written variables' statistics are recomputed
    return session.update("values", [v.path for v in variables], structure_checked=True)


def _check_finite(path: str, old: np.ndarray, new: np.ndarray, description: str) -> None:
    """Refuse a result that holds inf or NaN where the old value was finite (an overflow of
    the variable's dtype, e.g. float16 above 65504)."""
    if new.dtype.kind != "f" and new.dtype.name != "bfloat16":
        return
    bad = ~np.isfinite(new.astype(np.float32) if new.dtype.kind != "f" else new)
    if bad.any():
        was = ~np.isfinite(old.astype(np.float32) if old.dtype.kind != "f" else old)
        made = int(np.count_nonzero(bad & ~was))
        if made:
            import ml_dtypes

            top = float(ml_dtypes.finfo(new.dtype).max)
            raise EditError(f"{description} would make {made} of {new.size} values of {path} "
                            f"inf or NaN: the result overflows {new.dtype} (largest finite "
                            f"value {top:.6g}); nothing changed. Use a smaller factor or std.")


def _digest(values: list[np.ndarray]) -> bytes:
    """A fingerprint of a variable's values, to tell whether it changed since an edit."""
    h = hashlib.blake2b(digest_size=16)
    for value in values:
        h.update(np.ascontiguousarray(value).view(np.uint8).tobytes() if value.dtype.kind != "O"
                 else repr(value.tolist()).encode())
    return h.digest()


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


def _record(session: Any, step: EditStep, news: list[np.ndarray]) -> None:
    history = undo_history(session)
    history.record(step, news, _budget(history, session.tree))


DEFAULT_BUDGET_CAP = 300 * 2**20
"""The default budget is the model's weight bytes, at most 10% of them plus this: the
memory bound every operation keeps on a large model."""


def _budget(history: EditHistory, tree: Any) -> int:
    """``budget_bytes``, else the model's weight bytes, at most 10% of them + 300 MB (twice
    that with ``keep_originals``: room for the originals too)."""
    if history.budget_bytes is not None:
        return int(history.budget_bytes)
    weights = sum(int(v.nbytes) for v in tree.variables())
    weights = min(weights, weights // 10 + DEFAULT_BUDGET_CAP)
    return 2 * weights if history.keep_originals else weights


def _move(model: Any, undo: bool, force: bool = False) -> Any:
    session = edit_session(model)
    history = undo_history(session)
    source = history.undo_steps if undo else history.redo_steps
    if not source:
        dropped = f" ({len(history.dropped)} older step(s) were dropped)" if history.dropped \
            else ""
        raise EditError(f"Nothing to {'undo' if undo else 'redo'}{dropped}.")
    step = source[-1]
    current = [_host_values(c.components) for c in step.changes]
    moved = [c.path for c, now in zip(step.changes, current, strict=True)
             if c.written and _digest(now) != c.written]
    if moved and not force:
        word = "undo" if undo else "redo"
        raise EditError(
            f"Nothing was {word}ne: {len(moved)} variable(s) of {step.description} changed "
            f"since it was {'made' if undo else 'undone'} ({', '.join(moved[:3])}"
            f"{', ...' if len(moved) > 3 else ''}), by training or by code; an {word} would "
            f"throw those changes away. hw.{word}(model, force=True) does it anyway; "
            "hw.snapshot(model) first keeps the current values.")
    # all or nothing: a failed write puts the current values back
    _write([_Change(c.path, c.components, now) for c, now in zip(step.changes, current,
                                                                strict=True)],
           [c.before for c in step.changes])
    history.moved(undo, current, _budget(history, session.tree))
    return session.update("values", [c.path for c in step.changes],
                          structure_checked=True)


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
