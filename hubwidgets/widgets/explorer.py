"""``LayerExplorer``: a lazily expanded tree of the model's layers with freeze toggles.

Python owns the state; the browser view (``static/explorer.js``) only renders ``_rows`` and
sends actions as custom messages (``{"action": "expand", "path": ...}``).  Each action is a
method marked :func:`~hubwidgets.widgets.actions.action`; a message is validated against its
signature before it runs (tests send the same messages through :meth:`handle_action`).
The explorer observes the model's :class:`~hubwidgets.model.session.ModelSession`, so a
change made anywhere (another view, ``hw.freeze``, training) shows here.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from pathlib import Path
from typing import Any, Callable

import anywidget
import traitlets

from ..model import codegen, edits
from ..model.edit_specs import EDITS, EditSpec
from ..model.errors import HubWidgetsError
from ..model.lora import unfreeze_message, will_restore
from ..model.lora_edits import plan_note
from ..model.lora_enable import (enable_lora, enable_lora_message,
                                 lora_candidates)
from ..model.formatting import format_bytes, format_shape, trainable_label
from ..model.freeze import (freeze_up_to, needs_compile, set_trainable,
                            top_level_index)
from ..model.matching import is_regular_expression, outermost, search_nodes
from ..model.session import ModelSession, session_for
from ..model.probe import MARKS_KEY
from ..model.session_stats import nonfinite_paths
from ..model.snapshot import before_first_edit, restore
from ..model.tree import Node, VariableInfo
from ..model.variable_flags import why_not_trained
from .actions import action, actions_of, bind_message
from .keywords import KnownKeywords
from .session_view import GONE, SessionView, count_views

STATIC = Path(__file__).parent / "static"
PAGE_SIZE = 100  # children listed per expanded node before a "show more" row


def node_row(node: Node, depth: int, expanded: bool, nonfinite: set[str],
             marks: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """What one row of the explorer shows (JSON-ready); ``marks``: extra badges by path (a
    probe's dead and saturated layers)."""
    flag = node.trainable
    badges = [] if flag is True else [trainable_label(flag)]
    if nonfinite and any(v.path in nonfinite for v in node.all_variables()):
        badges.append("NaN/Inf")
    if node.shared:
        badges.append("shared")
    rank, mode = node.lora_rank, node.quantization
    if rank is not None:
        badges.append(f"LoRA r{rank}")
    if mode is not None:
        badges.append(mode)
    badges += (marks or {}).get(node.path, [])
    row = {
        "path": node.path, "name": node.name, "class_name": node.class_name,
        "output_shape": format_shape(node.output_shape) if node.output_shape is not None else "",
        "params": node.params, "trainable_params": node.trainable_params,
        "frozen_params": node.non_trainable_params, "trainable": trainable_label(flag),
        "badges": badges, "depth": depth, "has_children": node.has_children,
        "expanded": expanded, "notes": list(node.notes),
        "lora_rank": rank, "quantization": mode,
    }
    if expanded:
        row["variables"] = [variable_row(v, nonfinite) for v in node.variables]
    return row


def more_row(parent: Node, depth: int, remaining: int) -> dict[str, Any]:
    """The row that stands for children not listed yet."""
    return {"path": parent.path + "/\u2026", "more_of": parent.path, "remaining": remaining,
            "depth": depth, "name": f"{remaining:,} more", "class_name": "", "badges": []}


def variable_row(var: VariableInfo, nonfinite: set[str]) -> dict[str, Any]:
    return {"path": var.path, "name": var.name, "shape": format_shape(var.shape),
            "dtype": var.dtype, "trainable": var.trainable, "device": var.device,
            "size": format_bytes(var.nbytes), "nonfinite": var.path in nonfinite,
            "can_train": var.can_train, "not_trained_why": why_not_trained(var),
            "params": var.size}


ROW_MENU_ACTIONS = [
    {"action": "restore_snapshot", "label": "Restore (before the first edit)", "fields": []},
    {"action": "enable_lora", "label": "LoRA\u2026", "fields": [{
        "name": "rank", "example": "4",
        "question": "Add LoRA adapters of rank (to every Dense, EinsumDense and Embedding "
                    "here; the base kernels are frozen). Keras cannot remove adapters: this "
                    "cannot be undone."}]},
]
"""The row menu's entries after the weight edits: the explorer's own row actions."""


def row_menu() -> list[dict[str, Any]]:
    """The row menu the browser draws: every edit of the table, then :data:`ROW_MENU_ACTIONS`."""
    return [spec.menu_entry() for spec in EDITS.values()] + ROW_MENU_ACTIONS


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
    _rows = traitlets.List().tag(sync=True)
    _expanded = traitlets.List().tag(sync=True)

    def __init__(self, model: Any, *, scan_weights: bool = False, var_name: str | None = None,
                 **kwargs: Any) -> None:
        selected = kwargs.pop("selected", "")
        super().__init__(**kwargs)
        self._ready = False
        session = session_for(model, var_name)
        self.session = session
        self.scan_weights = scan_weights
        self._shown: dict[str, int] = {}  # node path -> how many children are listed
        self._search_error = ""
        self._expanded = [self.tree.root.path]
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
        """Recompute the visible rows and totals from the session's tree."""
        root = self.tree.root
        with self.hold_sync():
            history = edits.undo_history(self.session)  # no look at the model
            self.totals = {"params": root.params, "trainable": root.trainable_params,
                           "frozen": root.non_trainable_params,
                           "bytes": format_bytes(root.nbytes),
                           "needs_compile": needs_compile(self.tree),
                           "can_undo": bool(history.undo_steps),
                           "can_redo": bool(history.redo_steps)}
            self._rows = self._visible_rows()

    def _visible_rows(self) -> list[dict[str, Any]]:
        expanded = set(self._expanded)
        try:
            keep = self._search_matches()
        except (HubWidgetsError, ValueError) as exc:
            self.message = self._search_error = _text(exc)
            keep = set()
        else:
            if self._search_error and self.message == self._search_error:
                self.message = ""  # the search that failed was replaced by one that works
            self._search_error = ""
        nonfinite = self._badged = self.nonfinite()
        marks = self.session.cache.get(MARKS_KEY)  # set by an Activations view of the model
        rows: list[dict[str, Any]] = []

        def visit(node: Node, depth: int) -> None:
            if keep is not None and node.path not in keep:
                return
            is_open = node.path in expanded or (keep is not None and node.has_children)
            rows.append(node_row(node, depth, is_open, nonfinite, marks))
            if not is_open:
                return
            children = node.children
            if keep is not None:
                children = [c for c in children if c.path in keep]
            limit = self._shown.get(node.path, PAGE_SIZE)
            for child in children[:limit]:
                visit(child, depth + 1)
            if len(children) > limit:
                rows.append(more_row(node, depth + 1, len(children) - limit))

        visit(self.tree.root, 0)
        return rows

    def _search_matches(self) -> set[str] | None:
        """Paths to show for the search box: matches and their ancestors (None: no search)."""
        if not self.query.strip():
            return None
        keep: set[str] = set()
        for node in search_nodes(self.tree, self.query):
            keep.update(n.path for n in [*node.ancestors(), node])
        return keep

    @traitlets.observe("query", "_expanded")
    def _on_view_change(self, change: dict[str, Any]) -> None:
        if getattr(self, "_ready", False):
            self._rows = self._visible_rows()

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
        if what == "structure":
            self._shown = {p: n for p, n in self._shown.items() if self._exists(p)}
            self._expanded = [p for p in self._expanded if self._exists(p)] \
                or [self.tree.root.path]
            if self.selected and not self._exists(self.selected):
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

    # -- actions ---------------------------------------------------------------------------
    views_shown = 0
    """How many views of this explorer the browser shows now (each reports itself)."""
    on_views_changed: Callable[[int], None] | None = None
    """Called with :attr:`views_shown` when it changes (the dashboard holds its model only
    while it is shown)."""

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        shown = count_views(self.views_shown, content)
        if shown is None:
            self.handle_action(content)
            return
        self.views_shown = shown
        if self.on_views_changed is not None:
            self.on_views_changed(shown)
        elif shown == 0:
            self.release()
        elif not self.hold():
            self.message = GONE

    def handle_action(self, content: Any) -> None:
        """Run one message as the browser sends it.  A malformed message, or an action that
        fails, changes nothing and says why in ``message``."""
        try:
            name, fields = bind_message(type(self), content)
            self.session.update()  # the model may have changed since the rows were sent
            outcome = actions_of(type(self))[name](self, **fields)
        except (HubWidgetsError, KeyError, ValueError, TypeError) as exc:
            self.message = _text(exc)
            return
        if isinstance(outcome, tuple):  # (code, what happened) of an action that changed the model
            self.code, self.message = outcome
        elif name in ("select", "expand", "collapse", "more"):
            self.message = ""

    @action
    def expand(self, path: str) -> None:
        """Open the node at ``path`` (and its parents): its children are sent now."""
        node = self._node(path)
        opened = [n.path for n in [*node.ancestors(), node]]
        self._expanded = list(dict.fromkeys([*self._expanded, *opened]))

    @action
    def collapse(self, path: str) -> None:
        """Close the node at ``path``."""
        self._expanded = [p for p in self._expanded if p != path]

    @action
    def more(self, path: str) -> None:
        """List the next :data:`PAGE_SIZE` children of the node at ``path``."""
        node = self._node(path)
        self._shown[node.path] = self._shown.get(node.path, PAGE_SIZE) + PAGE_SIZE
        self._rows = self._visible_rows()

    def show_more(self, path: str) -> None:
        """Python's name for the "show more" row."""
        self.more(path)

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


def _text(exc: BaseException) -> str:
    """An exception's message without the quotes ``KeyError`` adds."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)
