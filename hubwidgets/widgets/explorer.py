"""``LayerExplorer``: a lazily expanded tree of the model's layers with freeze toggles.

The model's rows live in Python; what a view shows of them lives in the view
(``static/explorer.js``): which nodes are open, how many children are listed, the scroll.
Two views of one explorer open their trees apart.  The browser asks with anywidget's
request/response commands (``experimental.invoke``):

- ``_subtree_request``: one node's variables and a page of its children, asked for the first
  time a view opens the node (``_top_rows``, synced, holds the root's, so the first paint and
  a saved notebook need no round trip);
- ``_search_request``: what the search box shows (matches and their ancestors);
- ``_reveal_request``: which nodes to open, and how far to page, to list a selection made
  elsewhere;
- ``_action_request``: every action (a method marked :func:`~hubwidgets.widgets.actions.action`,
  validated against its signature before it runs); its response ``{ok, message, code}`` goes
  back to the click that sent it.

When the model changes, ``rows_version`` grows and each view asks again for the subtrees it
has open.  Python runs the same actions with :meth:`LayerExplorer.handle_action`, and reads
what a view shows with :meth:`LayerExplorer.visible_rows`.  The explorer observes the model's
:class:`~hubwidgets.model.session.ModelSession`, so a change made anywhere (another view,
``hw.freeze``, training) shows here.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import anywidget
import traitlets

from ..model import codegen, edits
from ..model.edit_specs import EDITS, EditSpec
from ..model.errors import HubWidgetsError, MessageError
from ..model.lora import unfreeze_message, will_restore
from ..model.lora_edits import plan_note
from ..model.lora_enable import (enable_lora, enable_lora_message,
                                 lora_candidates)
from ..model.formatting import format_bytes
from ..model.freeze import (freeze_up_to, needs_compile, set_trainable,
                            top_level_index)
from ..model.matching import (is_regular_expression, node_of_variable, outermost,
                              search_nodes)
from ..model.session import ModelSession, session_for
from ..model.probe import MARKS_KEY
from ..model.session_stats import nonfinite_paths
from ..model.snapshot import before_first_edit, restore
from ..model.tree import Node
from .actions import MAX_STRING, action, actions_of, bind_message
from .explorer_rows import more_row, node_row, row_menu, variable_row
from .keywords import KnownKeywords
from .session_view import GONE, SessionView, count_views

STATIC = Path(__file__).parent / "static"
PAGE_SIZE = 100  # children listed per expanded node before a "show more" row
MAX_PAGE = 100_000  # the most children one request may ask for


class LayerExplorer(KnownKeywords, SessionView, anywidget.AnyWidget):
    """A collapsible tree of ``model``'s layers: counts, shapes, badges and freeze toggles.

    ``selected`` (a node or variable path) is the session's selection, so every view of the
    model follows it.  ``code`` holds the Python equivalent of the last action, ``message``
    what happened (or why nothing did).
    """

    _esm = STATIC / "explorer.js"
    _css = STATIC / "explorer.css"

    selected = traitlets.Unicode("").tag(sync=True)
    """The selected node or variable path ("" for none)."""
    query = traitlets.Unicode("").tag(sync=True)
    """The search box: a case-insensitive regular expression over names and classes."""
    code = traitlets.Unicode("").tag(sync=True)
    """The Python that does what the last action did."""
    message = traitlets.Unicode("").tag(sync=True)
    """The outcome of the last action, or the error that stopped it."""
    totals = traitlets.Dict().tag(sync=True)
    """The model's parameter totals."""
    row_menu = traitlets.List().tag(sync=True)
    """Each row's menu: one entry per weight edit of the edit table, then restore and LoRA
    (``{"action", "label", "fields": [{"name", "question", "example"}]}``)."""
    rows_version = traitlets.Int(0).tag(sync=True)
    """Grows whenever the rows may have changed: each view asks again for what it shows."""
    _top_rows = traitlets.Dict().tag(sync=True)
    # the root's row and its subtree (variables, first page of children): the first paint

    def __init__(self, model: Any, *, scan_weights: bool = False, var_name: str | None = None,
                 **kwargs: Any) -> None:
        selected = kwargs.pop("selected", "")
        super().__init__(**kwargs)
        self._ready = False
        session = session_for(model, var_name)
        self.session = session
        self.scan_weights = scan_weights
        self._search_error = ""
        self._searched: tuple[Any, ...] = ()  # (query, version, matches): the last search
        self.row_menu = row_menu()
        self.selected = selected or self.session.selection
        self.on_msg(self._on_custom_msg)
        self._follow(session)
        self._ready = True
        self.render_rows()

    @property
    def var_name(self) -> str:
        """The model's variable name in generated code."""
        return self.session.var_name

    # -- state the browser reads ------------------------------------------------------------
    def nonfinite(self) -> set[str]:
        """Variables holding NaN or Inf, when statistics are wanted (``scan_weights``)."""
        return nonfinite_paths(self.session) if self.scan_weights else set()

    def statistics_changed(self) -> None:
        """More statistics are known (the background work): the rows are drawn again when
        the variables holding NaN or Inf changed."""
        if not self.scan_weights:
            return
        found = self.nonfinite()
        if found != getattr(self, "_badged", set()):
            self.render_rows()

    def render_rows(self) -> None:
        """Send the totals and the top of the tree again, and tell the views that the rows
        changed (each asks again for the subtrees it has open)."""
        root = self.tree.root
        with self.hold_sync():
            history = edits.undo_history(self.session)  # no look at the model
            self.totals = {"params": root.params, "trainable": root.trainable_params,
                           "frozen": root.non_trainable_params,
                           "bytes": format_bytes(root.nbytes),
                           "needs_compile": needs_compile(self.tree),
                           "can_undo": bool(history.undo_steps),
                           "can_redo": bool(history.redo_steps)}
            self._badged = self.nonfinite()
            self._top_rows = {"row": self._row(root, 0, False), **self.subtree(root.path)}
            self.rows_version += 1

    def _row(self, node: Node, depth: int, expanded: bool,
             nonfinite: set[str] | None = None) -> dict[str, Any]:
        marks = self.session.cache.get(MARKS_KEY)  # set by an Activations view of the model
        return node_row(node, depth, expanded, self._badged if nonfinite is None else nonfinite,
                        marks)

    def subtree(self, path: str, start: int = 0, count: int = PAGE_SIZE) -> dict[str, Any]:
        """What a view needs to open the node at ``path``: its variable rows, and the rows of
        its children ``start`` to ``start + count`` (``total``: how many it has)."""
        node = self._node_at(path)
        depth = len(node.ancestors()) + 1
        children = node.children
        return {"path": node.path, "start": start, "total": len(children),
                "variables": [variable_row(v, self._badged) for v in node.variables],
                "children": [self._row(c, depth, False)
                             for c in children[start:start + count]]}

    def visible_rows(self, expanded: Iterable[str] | None = None,
                     shown: Mapping[str, int] | None = None,
                     query: str | None = None) -> list[dict[str, Any]]:
        """The rows a view shows, top to bottom, when the nodes at ``expanded`` are open
        (default: the root only), ``shown[path]`` children are listed under a node (default
        :data:`PAGE_SIZE`) and the search box holds ``query`` (default: :attr:`query`; a
        search opens every node on the way to a match).  A search that fails shows nothing."""
        is_expanded = {self.tree.root.path} if expanded is None else set(expanded)
        shown = shown or {}
        try:
            keep = self.search_matches(self.query if query is None else query)
        except (HubWidgetsError, ValueError):
            return []
        nonfinite = self.nonfinite()
        rows: list[dict[str, Any]] = []

        def visit(node: Node, depth: int) -> None:
            if keep is not None and node.path not in keep:
                return
            is_open = node.path in is_expanded or (keep is not None and node.has_children)
            rows.append(self._row(node, depth, is_open, nonfinite))
            if not is_open:
                return
            children = node.children
            if keep is not None:
                children = [c for c in children if c.path in keep]
            limit = shown.get(node.path, PAGE_SIZE)
            for child in children[:limit]:
                visit(child, depth + 1)
            if len(children) > limit:
                rows.append(more_row(node, depth + 1, len(children) - limit))

        visit(self.tree.root, 0)
        return rows

    def search_matches(self, query: str) -> set[str] | None:
        """Paths the search box shows for ``query``: the matches and their ancestors (None:
        no search).  A bad or too slow pattern raises an error that says why."""
        if not query.strip():
            return None
        if self._searched[:2] != (query, self.session.version):
            keep: set[str] = set()
            for node in search_nodes(self.tree, query):
                keep.update(n.path for n in [*node.ancestors(), node])
            self._searched = (query, self.session.version, keep)
        return self._searched[2]

    def reveal_steps(self, path: str) -> list[dict[str, Any]]:
        """How a view lists the row at ``path``: each node above it (from the root down)
        with how many of its children must be listed (a multiple of :data:`PAGE_SIZE`)."""
        owner = self._owner_of(path)
        chain = [*owner.ancestors(), owner]
        steps = []
        for parent, child in zip(chain, chain[1:]):
            index = next(i for i, c in enumerate(parent.children) if c is child)
            steps.append({"path": parent.path, "listed": PAGE_SIZE * (index // PAGE_SIZE + 1)})
        if owner.path != path:  # a variable: its layer is opened too
            steps.append({"path": owner.path, "listed": PAGE_SIZE})
        return steps

    def _owner_of(self, path: str) -> Node:
        """The node at ``path``, or the node a variable at ``path`` belongs to."""
        if self._is_variable(path):
            return node_of_variable(self.tree, path)
        return self._node_at(path)

    def _node_at(self, path: str) -> Node:
        """The node at exactly ``path`` (a message names rows by their full path)."""
        node = self._node(path)
        if node.path != path.strip("/"):
            raise KeyError(f"No layer {path!r} in {self.tree.root.name!r}.")
        return node

    @traitlets.observe("query")
    def _on_query(self, change: dict[str, Any]) -> None:
        if not getattr(self, "_ready", False):
            return
        try:
            self.search_matches(change["new"])
        except (HubWidgetsError, ValueError) as exc:
            self.message = self._search_error = _text(exc)
        else:
            if self._search_error and self.message == self._search_error:
                self.message = ""  # the search that failed was replaced by one that works
            self._search_error = ""

    @traitlets.observe("selected")
    def _on_selected(self, change: dict[str, Any]) -> None:
        if not getattr(self, "_ready", False):
            return
        path = change["new"]
        if path and not self._exists(path):  # e.g. synced from the browser: refused
            self.message = f"No layer or variable {path!r} in {self.tree.root.name!r}."
            self.selected = change["old"] if self._exists(change["old"]) else ""
            return
        self.session.select(path)

    def _on_session_change(self, session: ModelSession, what: str) -> None:
        if what == "selection":
            self.selected = session.selection
            return
        if what == "structure" and self.selected and not self._exists(self.selected):
            self.selected = ""
        self.render_rows()

    def _exists(self, path: str) -> bool:
        try:
            self.tree.find_variable(path)
            return True
        except KeyError:
            pass
        try:
            return self.tree.find(path).path == path
        except KeyError:
            return False

    def _node(self, path: str) -> Any:
        """The node a message names by its full path.  An empty path is refused (``find``
        would read it as the root: a message without a path must not act on the whole
        model)."""
        if not path.strip("/ "):
            raise KeyError("No layer or variable path was given; nothing changed.")
        return self.tree.find(path)

    # -- the browser's requests (anywidget commands: each answers the view that asked) --------
    @anywidget.experimental.command
    def _subtree_request(self, msg: Any, buffers: list[bytes]) -> tuple[dict[str, Any], list]:
        """``{path, start, count}`` -> :meth:`subtree` with ``ok``, or ``{ok: false, message}``."""
        def answer(fields: dict[str, Any]) -> dict[str, Any]:
            path = _string(fields, "path")
            return self.subtree(path, _count(fields, "start", 0),
                                _count(fields, "count", PAGE_SIZE))
        return _answer(answer, msg), []

    @anywidget.experimental.command
    def _search_request(self, msg: Any, buffers: list[bytes]) -> tuple[dict[str, Any], list]:
        """``{query, shown}`` -> ``{ok, rows}``: what the search box shows (every node on the way
        to a match open, ``shown[path]`` children listed), or ``{ok: false, message}``."""
        def answer(fields: dict[str, Any]) -> dict[str, Any]:
            query, shown = _string(fields, "query"), fields.get("shown") or {}
            if not isinstance(shown, dict):
                raise MessageError("'shown' must map paths to counts.")
            shown = {str(p): _count(shown, p, PAGE_SIZE) for p in list(shown)[:10_000]}
            self.search_matches(query)  # its error goes back to the search box
            return {"rows": self.visible_rows(shown=shown, query=query)}
        return _answer(answer, msg), []

    @anywidget.experimental.command
    def _reveal_request(self, msg: Any, buffers: list[bytes]) -> tuple[dict[str, Any], list]:
        """``{path}`` -> ``{ok, steps}``: :meth:`reveal_steps`."""
        return _answer(lambda fields: {"steps": self.reveal_steps(_string(fields, "path"))},
                       msg), []

    @anywidget.experimental.command
    def _action_request(self, msg: Any, buffers: list[bytes]) -> tuple[dict[str, Any], list]:
        """One action, as :meth:`handle_action` runs it; its response goes to the click."""
        return self.handle_action(msg), []

    # -- actions ---------------------------------------------------------------------------
    views_shown = 0
    """How many views of this explorer the browser shows now (each reports itself)."""
    on_views_changed: Callable[[int], None] | None = None
    """Called with :attr:`views_shown` when it changes (the dashboard holds its model only
    while it is shown)."""

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        shown = count_views(self.views_shown, content)
        if shown is None:  # a request (answered by its command) or nothing we know
            return
        self.views_shown = shown
        if self.on_views_changed is not None:
            self.on_views_changed(shown)
        elif shown == 0:
            self.release()
        elif not self.hold():
            self.message = GONE

    def handle_action(self, content: Any) -> dict[str, Any]:
        """Run one message as the browser sends it, and answer as the browser is answered:
        ``{"ok", "message", "code"}``.  A malformed message, or an action that fails, changes
        nothing and says why (``ok`` false); ``message`` and ``code`` are kept in the traits
        of the same names too."""
        try:
            name, fields = bind_message(type(self), content)
            self.session.update()  # the model may have changed since the rows were sent
            outcome = actions_of(type(self))[name](self, **fields)
        except (HubWidgetsError, KeyError, ValueError, TypeError) as exc:
            self.message = _text(exc)
            return {"ok": False, "message": self.message, "code": ""}
        if isinstance(outcome, tuple):  # (code, what happened) of an action that changed the model
            self.code, self.message = outcome
            return {"ok": True, "message": self.message, "code": self.code}
        self.message = ""
        return {"ok": True, "message": "", "code": ""}

    @action
    def select(self, path: str) -> None:
        """Select a node or variable (other views follow); "" clears the selection."""
        if path and not self._exists(path):
            raise KeyError(f"No layer or variable {path!r} in {self.tree.root.name!r}.")
        self.selected = path

    @action
    def set_trainable(self, path: str, value: bool) -> tuple[str, str]:
        """The row toggle: freeze (``value`` false) or unfreeze the node at ``path``."""
        node = self._node(path)
        restored = value and node.keras_layer and will_restore(self.session.layers, node.obj)
        set_trainable(self.tree, node.path, value)
        code = codegen.set_trainable_code(self.tree, [node], value, self.var_name, restored)
        told = unfreeze_message(node.obj) if value and node.keras_layer else ""
        if restored:
            told = (f"Gave back the flags {node.name!r} had before it was frozen (LoRA: only "
                    "the adapters train); unfreeze it again to train everything in it but the "
                    f"LoRA base kernels. {told}")
        return code, self._compile_hint(told)

    @action
    def freeze_all(self) -> tuple[str, str]:
        """Freeze every layer."""
        return self.set_trainable(self.tree.root.path, False)

    @action
    def unfreeze_all(self) -> tuple[str, str]:
        """Make every layer trainable, every per-variable freeze undone."""
        return self.set_trainable(self.tree.root.path, True)

    @action
    def freeze_up_to(self, path: str = "") -> tuple[str, str]:
        """Freeze every top-level layer up to and including ``path`` (default: the
        selection; a variable stands for its layer) and unfreeze the rest."""
        path = path or self.selected
        if not path:
            raise ValueError("Select a layer first: everything up to it will be frozen.")
        cut = top_level_index(self.tree, path) + 1
        freeze_up_to(self.tree, path)
        told = unfreeze_message(self.tree.root.obj) if self.tree.root.keras_layer else ""
        return codegen.freeze_up_to_code(self.tree, cut, self.var_name), self._compile_hint(told)

    @action
    def freeze_pattern(self, pattern: str) -> tuple[str, str]:
        """Freeze exactly the layers the search box shows for ``pattern``."""
        if not pattern.strip():
            raise ValueError("Type a name or regular expression in the search box first.")
        shown = outermost(search_nodes(self.tree, pattern))
        if not shown:
            how = "" if is_regular_expression(pattern) else \
                " (not a valid regular expression, so it was searched as plain text)"
            raise KeyError(f"No layer matches {pattern!r}{how}: nothing was frozen.")
        for node in shown:
            set_trainable(self.tree, node.path, False)
        code = codegen.freeze_pattern_code(self.tree, pattern, self.var_name)
        root = self.tree.root.path + "/"
        names = ", ".join(n.path.removeprefix(root) for n in shown[:5]) + \
            (", ..." if len(shown) > 5 else "")
        return code, self._compile_hint(f"Froze {len(shown)} layer(s): {names}.")

    @action
    def enable_lora(self, path: str, rank: float) -> tuple[str, str]:
        """Add LoRA adapters of ``rank`` to the layers at ``path`` (a layer, or a scope: every
        Dense, EinsumDense and Embedding below it), with Keras' ``layer.enable_lora(rank)``.
        Cannot be undone (the browser says so before sending)."""
        return self._enable_lora(self.tree.find(path).path, rank)

    @action
    def enable_lora_pattern(self, pattern: str, rank: float) -> tuple[str, str]:
        """Add LoRA adapters of ``rank`` to the layers the search box shows for ``pattern``."""
        if not pattern.strip():
            raise ValueError("Type a name or regular expression in the search box first.")
        return self._enable_lora(pattern, rank, search=True)

    def _enable_lora(self, target: str, rank: float, search: bool = False) -> tuple[str, str]:
        found, skipped = lora_candidates(self.tree, target, search)
        whole = int(rank) if float(rank).is_integer() else rank
        code = codegen.enable_lora_code(self.tree, found, whole, self.var_name) if found else ""
        enable_lora(self.tree.obj, target, whole, search=search)  # all checked, then done
        return code, self._compile_hint(enable_lora_message(found, skipped, whole))

    # -- edits (values, never flags): one action per entry of the edit table ----------------
    @classmethod
    def generated_actions(cls) -> dict[str, Callable[..., Any]]:
        """One action per weight edit of :data:`hubwidgets.model.edit_specs.EDITS`: its
        fields are ``path`` and the numbers the edit's spec asks for."""
        return {name: _edit_action(spec) for name, spec in EDITS.items()}

    @action
    def restore_snapshot(self, path: str) -> tuple[str, str]:
        """Put the weights at ``path`` back as they were before the first edit made here."""
        node = self._node(path)
        part = before_first_edit(self.session, [v.path for v in node.all_variables()])
        if not part.values:
            raise ValueError(f"Nothing to restore: no weight of {node.name!r} was edited from "
                             "this explorer.")
        restore(self.session, part)  # handle_action brought the tree up to date
        return (codegen.restore_before_first_edit_code(self.var_name),
                f"Restored {len(part.values)} variable(s) of {node.name!r}. "
                f"Undo: {codegen.undo_code(self.var_name)}.")

    @action
    def undo(self) -> tuple[str, str]:
        """Undo the last edit, bit for bit."""
        edits.undo(self.session)
        return codegen.undo_code(self.var_name), "Undone."

    @action
    def redo(self) -> tuple[str, str]:
        """Redo the last undone edit, bit for bit."""
        edits.redo(self.session)
        return codegen.redo_code(self.var_name), "Redone."

    def _edit(self, name: str, path: str, *args: Any) -> tuple[str, str]:
        node_path = self._node(path).path if not self._is_variable(path) else path
        # "restore" puts back the values before the first edit: the edits' own undo copies
        history = edits.undo_history(self.session)
        history.start_keeping_originals()
        last = history.undo_steps[-1] if history.undo_steps else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", edits.UndoHistoryWarning)
            call, plain = edits.edit_with_code(self.session, name, node_path, *args,
                                               var=self.var_name)  # no second look
        told = []
        for w in caught:  # still warned in Python; the budget's word also goes to the view
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if issubclass(w.category, edits.UndoHistoryWarning):
                told.append(str(w.message))
        code = codegen.edit_shown_code(call, plain)
        kept = bool(history.undo_steps) and history.undo_steps[-1] is not last
        undo = f" Undo: {codegen.undo_code(self.var_name)}." if kept else ""
        meaning = plan_note(self.tree, name, node_path)  # LoRA / quantized: what it did
        return code, " ".join(t for t in [f"Done: {call}.{undo}", meaning, *told] if t)

    def _is_variable(self, path: str) -> bool:
        try:
            self.tree.find_variable(path)
            return True
        except KeyError:
            return False

    def _outcome(self, code: str) -> tuple[str, str]:
        return code, self._compile_hint("")

    def _compile_hint(self, text: str) -> str:
        if needs_compile(self.tree):
            hint = (f"The model was compiled before this change: call {self.var_name}"
                    ".compile(...) again, or training will ignore it.")
            return f"{text} {hint}".strip()
        return text

    def refresh(self) -> None:
        """Re-read the model (after training or ``set_weights``): every view follows."""
        self.session.update("values")


@functools.lru_cache(maxsize=None)  # one function per spec: the action table reuses it
def _edit_action(spec: EditSpec) -> Callable[..., tuple[str, str]]:
    """The explorer's action for one edit: ``path`` and the spec's fields (numbers)."""
    names = [f.name for f in spec.fields]

    def run(self: LayerExplorer, path: str, **fields: float) -> tuple[str, str]:
        return self._edit(spec.name, path, *(float(fields[n]) for n in names))

    run.__name__ = run.__qualname__ = spec.name
    run.__doc__ = f"{spec.label.rstrip(chr(0x2026))} the weights at ``path`` (one undo step)."
    run.__annotations__ = {"path": "str", **{n: "float" for n in names}}
    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("path", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="str")]
        + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation="float")
           for n in names])
    return run


def _answer(answer: Callable[[dict[str, Any]], dict[str, Any]], msg: Any) -> dict[str, Any]:
    """A request's response: ``answer(msg)`` with ``ok``, or ``{ok: false, message}`` (a
    request never raises: the view waiting for it would wait in vain)."""
    try:
        if not isinstance(msg, dict):
            raise MessageError(f"A request is an object, not {type(msg).__name__}.")
        return {"ok": True, **answer(msg)}
    except (HubWidgetsError, KeyError, ValueError, TypeError) as exc:
        return {"ok": False, "message": _text(exc)}


def _string(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or len(value) > MAX_STRING:
        raise MessageError(f"{name!r} must be a string of at most {MAX_STRING:,} characters.")
    return value


def _count(fields: Mapping[str, Any], name: str, default: int) -> int:
    value = fields.get(name, default)
    if type(value) not in (int, float) or not math.isfinite(value) or not \
            0 <= value <= MAX_PAGE:
        raise MessageError(f"{name!r} must be a count from 0 to {MAX_PAGE:,}, got {value!r}.")
    return int(value)


def _text(exc: BaseException) -> str:
    """An exception's message without the quotes ``KeyError`` adds."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)
