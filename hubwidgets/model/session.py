"""``ModelSession``: the one object per live model that every view and action goes through.

A session holds the model's :class:`~hubwidgets.model.tree.ModelTree`, the one version
counter, the selection, the variable name used in generated code, the one cache of results
derived from the model (:class:`~hubwidgets.model.session_cache.SessionCache`) and the
statistics.  Views
(the explorer, the weight plots, the header, training and edit panels) :meth:`observe` it;
actions (freezing, edits, a training callback) call :meth:`update` once and every open view
follows.  Two dashboards of one model share one session: it is kept on the model object.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Iterable, Literal

from .build import build_tree
from .layer_bookkeeping import LayerBook
from .session_cache import Dependency, SessionCache
from .tree import ModelTree

Change = Literal["structure", "flags", "values", "selection"]
"""What changed: told to every view.  Views that ask (``observe(..., training=True)``) are
also told "training" at each event of a watched ``fit``."""
Observer = Callable[["ModelSession", str], None]
SESSION_ATTR = "_hubwidgets_session"


class ModelSession:
    """The shared, live state of one model.

    ``version`` grows on every change told to the views (the one version of the model's
    state); ``cache`` drops an entry only on the changes the entry names (and on a change of
    the structure), so a statistics plan outlives freezes, edits and selections.
    """

    def __init__(self, model: Any, var_name: str = "model") -> None:
        self.var_name = var_name
        self.tree: ModelTree = build_tree(model)
        self.model = self.tree.obj  # for a path, what was loaded from it
        self._fingerprint = _fingerprint_of_new(self.tree)
        self.version = 0
        self.selection = ""
        self._observers: list[Callable[[], Observer | None]] = []
        self.cache = SessionCache()
        """Results derived from the model, each dropped by the changes it depends on."""
        self.statistics: dict[tuple[int, bool], Any] = {}
        """Per-variable statistics by (bin count, effective weights)
        (:class:`~hubwidgets.model.session_stats.VariableStatistics`): a change drops only
        the variables it touched; a structure change keeps those still there."""
        self.edit_history: Any = None
        """The model's undo/redo steps (:class:`hubwidgets.model.edits.EditHistory`), set by
        ``hubwidgets.undo_history(model)`` on first use; dropped with the session."""
        self.watcher: Any = None
        """The latest ``hubwidgets.watch(model)`` callback, found again by ``explore``."""
        self.training_event: tuple[Any, str] | None = None
        """The last (watcher, event) of a watched ``fit`` (:meth:`training_progressed`)."""
        self._training_observers: list[Any] = []  # the refs in _observers told "training"
        self.outdated_compile: tuple[Any, ...] | None = None
        """The objects of the ``compile()`` that a per-variable trainable change outdated
        (:mod:`hubwidgets.model.compile_state`); None when none did."""
        self.layers = LayerBook()
        """hubwidgets' notes on single layers (weight order, LoRA flags), by layer."""

    # -- bringing the session up to date ---------------------------------------------------
    def update(self, changed: Change | None = None, paths: Iterable[str] | None = None, *,
               structure_checked: bool = False) -> ModelTree:
        """Bring the kept tree up to date with the live model, and tell every view what changed.

        ``changed``: None when nothing is known to have changed (the structure is checked:
        layers added, removed or built walk the model again and tell the views "structure";
        else the trainable flags are re-read and no view is told); "values" after training
        or edits (the statistics of ``paths``, variable paths, are computed again; of every
        variable when None); "flags" after a trainable change.  ``structure_checked``: the
        caller has just brought the tree up to date itself (no second look at the structure;
        "flags" re-reads only the trainable flags).  Returns the tree.
        """
        version = self.version
        if structure_checked:
            if changed == "flags":
                self.tree.refresh()
        elif not self.matches_model():
            self.tree = build_tree(self.model)
            self._fingerprint = _fingerprint_of_new(self.tree)
            self._changed("structure")
        if changed is None:
            return self.tree
        if changed == "values":
            self._drop_statistics(paths)
        if self.version == version or structure_checked:  # else "structure" covers it
            self._changed(changed)
        return self.tree

    def matches_model(self) -> bool:
        """Whether the live model's structure is still the kept tree's (then its trainable
        flags are re-read); tells no view.  For work begun on the kept tree before checking,
        which calls :meth:`update` when this says no."""
        if self.tree.fingerprint() != self._fingerprint:
            return False
        self.tree.refresh()
        return True

    def _drop_statistics(self, paths: Iterable[str] | None) -> None:
        """Forget the kept statistics of the variables at ``paths`` (all of them: None)."""
        keys: list[int] | None = None
        if paths is not None:
            keys = []
            for path in paths:
                try:
                    keys.append(self.tree.find_variable(path).key)
                except KeyError:  # not a variable path of this tree: be safe, drop all
                    keys = None
                    break
        for store in self.statistics.values():
            store.drop(keys)

    def select(self, path: str) -> None:
        """Make ``path`` (a node or variable path, or "") the selection every view shows."""
        if path != self.selection:
            self.selection = path
            self._changed("selection")

    def observe(self, callback: Observer, *, training: bool = False) -> Callable[[], None]:
        """Call ``callback(session, change)`` after every change; returns the function that
        stops it.  A bound method is held weakly, so a closed view is not kept alive.
        ``training``: also after each event of a watched ``fit`` ("training"; the watcher
        and its event are :attr:`training_event`)."""
        ref: Callable[[], Observer | None]
        if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
            ref = weakref.WeakMethod(callback)  # type: ignore[arg-type]
        else:
            ref = lambda: callback  # noqa: E731 - a strong reference for plain functions
        self._observers.append(ref)
        if training:
            self._training_observers.append(ref)
        observers = self._observers  # not the session: a view's stop() never holds the model
        training_observers = self._training_observers

        def stop() -> None:
            if ref in observers:
                observers.remove(ref)
            training_observers[:] = [r for r in training_observers if r is not ref]
        return stop

    def training_progressed(self, watcher: Any, event: str) -> None:
        """A watcher of this model recorded ``event`` ("begin", "interval", "end" of a
        ``fit``): the views observing training are told "training" (the model itself is
        told "values" once, at the end, by the watcher).  No version change."""
        self.training_event = (watcher, event)
        self._tell("training", only=self._training_observers)

    def _changed(self, what: str) -> None:
        self.version += 1
        self.cache.changed(what)
        if what == "structure":
            for store in self.statistics.values():
                store.keep_only(self.tree)
        self._tell(what)

    def _tell(self, what: str, only: Any = None) -> None:
        for ref in list(self._observers):
            if only is not None and not any(r is ref for r in only):
                continue
            callback = ref()
            if callback is None:
                self._observers.remove(ref)
                self._training_observers[:] = [r for r in self._training_observers
                                               if r is not ref]
            else:
                callback(self, what)

    # -- a session is not part of the model's saved or copied state -------------------------
    def __deepcopy__(self, memo: dict[int, Any]) -> None:
        return None

    def __copy__(self) -> None:
        return None

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_no_session, ())

    def __repr__(self) -> str:
        return (f"ModelSession(model={self.tree.root.name!r}, version={self.version}, "
                f"views={len(self._observers)})")


def trainable_layer_paths(tree: ModelTree) -> list[str]:
    """The variables a ``fit`` can change: every variable of each layer that has a trainable
    one (its moving statistics included: a trainable BatchNormalization updates them)."""
    return [v.path for node in tree for v in node.variables
            if any(w.trainable for w in node.variables)]


def _no_session() -> None:
    return None


def _fingerprint_of_new(tree: ModelTree) -> Any:
    """The structure fingerprint of a tree just built: recorded by the walk when the adapter
    keeps it (no second pass over a large model), else computed."""
    walked = getattr(tree.adapter, "walked_fingerprint", None)
    return walked if walked is not None else tree.fingerprint()


def session_for(model: Any, var_name: str | None = None) -> ModelSession:
    """The session of a live ``model`` (created on first use, then shared); an existing one
    is first brought up to date with the model (:meth:`ModelSession.update`)."""
    if isinstance(model, ModelSession):
        return model
    if isinstance(model, ModelTree):
        model = model.obj
    session = existing_session(model)
    if session is not None:
        session.update()
        if var_name:
            session.var_name = var_name
        return session
    session = ModelSession(model, var_name or "model")
    try:
        # on what was loaded for a path (a string keeps nothing), so its tree finds it
        object.__setattr__(session.model, SESSION_ATTR, session)
    except (AttributeError, TypeError):  # an object without a __dict__: not shared
        pass
    return session


def cached_for_tree(tree: ModelTree, key: str, make: Callable[[], Any], *,
                    depends_on: Iterable[Dependency] = (),
                    current: Callable[[Any], bool] | None = None) -> Any:
    """``make()`` for work that has only a tree: kept in the cache of the session whose tree
    it is (:meth:`SessionCache.cached`); made each time for a tree no session keeps (a path's
    tree, a tree a structure change replaced), which no change could drop."""
    session = existing_session(tree.obj)
    if session is not None and session.tree is tree:
        return session.cache.cached(key, make, depends_on, current)
    return make()


def layer_book(tree: ModelTree) -> LayerBook:
    """The per-layer notes of the model ``tree`` describes: its session's, or (an object that
    keeps no session) notes for this one action."""
    session = existing_session(tree.obj)
    return session.layers if session is not None else LayerBook()


def existing_session(model: Any) -> ModelSession | None:
    """The model's session if one was made, else None (never creates one)."""
    if isinstance(model, ModelTree):
        model = model.obj
    found = getattr(model, "__dict__", {}).get(SESSION_ATTR)
    return found if isinstance(found, ModelSession) else None
