"""``LayerExplorer``: a lazily expanded tree of the model's layers with freeze toggles.

Python owns the state; the browser view (``static/explorer.js``) only renders ``_rows`` and
sends actions as custom messages (``{"action": "expand", "path": ...}``).  Tests send the
same messages through :meth:`LayerExplorer.handle_action`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..model.errors import HubWidgetsError
from ..model.freeze import (freeze_up_to, matching_nodes, needs_compile, python_code,
                            set_trainable)
from ..model.inspect import inspect
from ..model.stats import weight_stats
from ..model.summary import format_bytes
from ..model.tree import ModelTree, Node, VariableInfo, format_shape, trainable_label

STATIC = Path(__file__).parent / "static"


PAGE_SIZE = 100  # children listed per expanded node before a "show more" row


def node_row(node: Node, depth: int, expanded: bool, nonfinite: set[str]) -> dict[str, Any]:
    """What one row of the explorer shows (JSON-ready)."""
    flag = node.trainable
    badges = [] if flag is True else [trainable_label(flag)]
    if nonfinite and any(v.path in nonfinite for v in node.all_variables()):
        badges.append("NaN/Inf")
    if node.shared:
        badges.append("shared")
    row = {
        "path": node.path, "name": node.name, "class_name": node.class_name,
        "output_shape": format_shape(node.output_shape) if node.output_shape is not None else "",
        "params": node.params, "trainable_params": node.trainable_params,
        "frozen_params": node.non_trainable_params, "trainable": trainable_label(flag),
        "badges": badges, "depth": depth, "has_children": node.has_children,
        "expanded": expanded, "notes": list(node.notes),
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
            "can_train": var.can_train, "params": var.size}


class LayerExplorer(anywidget.AnyWidget):
    """A collapsible tree of ``model``'s layers: counts, shapes, badges and freeze toggles.

    ``selected`` (a node or variable path) is synced with the browser, so other panels can
    follow it.  ``code`` holds the Python equivalent of the last action.
    """

    _esm = STATIC / "explorer.js"
    _css = STATIC / "explorer.css"

    selected = traitlets.Unicode("").tag(sync=True)
    query = traitlets.Unicode("").tag(sync=True)
    code = traitlets.Unicode("").tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    totals = traitlets.Dict().tag(sync=True)
    _rows = traitlets.List().tag(sync=True)
    _expanded = traitlets.List().tag(sync=True)

    def __init__(self, model: Any, *, scan_weights: bool = False, var_name: str = "model",
                 **kwargs: Any) -> None:
        unknown = set(kwargs) - {"layout", "selected", "query"}
        if unknown:
            raise TypeError(f"LayerExplorer got unexpected keyword arguments: {sorted(unknown)}")
        super().__init__(**kwargs)
        self._ready = False
        self.tree: ModelTree = inspect(model)
        self.var_name = var_name
        self.nonfinite: set[str] = set()
        self._shown: dict[str, int] = {}  # node path -> how many children are listed
        if scan_weights:
            self.scan_weights()
        self._expanded = [self.tree.root.path]
        self.on_msg(self._on_custom_msg)
        self._ready = True
        self.render_rows(refresh=False)  # inspect() has just read the live state

    # -- state the browser reads ------------------------------------------------------------
    def scan_weights(self) -> None:
        """Compute statistics once to badge variables with NaN or Inf values (the dashboard
        passes the ones its overview computed instead, see :meth:`mark_nonfinite`)."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats = weight_stats(self.tree)
        self.mark_nonfinite({path for path, s in stats.items() if s.has_nonfinite})

    def mark_nonfinite(self, paths: set[str]) -> None:
        """Badge the variables at ``paths`` (and their layers) as holding NaN or Inf."""
        self.nonfinite = set(paths)
        if self._ready:
            self.render_rows()

    def render_rows(self, refresh: bool = True) -> None:
        """Recompute the visible rows and totals from the live model."""
        if refresh:
            self.tree.refresh()
        root = self.tree.root
        with self.hold_sync():
            self.totals = {"params": root.params, "trainable": root.trainable_params,
                           "frozen": root.non_trainable_params,
                           "bytes": format_bytes(root.nbytes),
                           "needs_compile": needs_compile(self.tree)}
            self._rows = self._visible_rows()

    def _visible_rows(self) -> list[dict[str, Any]]:
        expanded = set(self._expanded)
        keep = self._search_matches()
        rows: list[dict[str, Any]] = []

        def visit(node: Node, depth: int) -> None:
            if keep is not None and node.path not in keep:
                return
            is_open = node.path in expanded or (keep is not None and node.has_children)
            rows.append(node_row(node, depth, is_open, self.nonfinite))
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
        try:
            pattern = re.compile(self.query, re.IGNORECASE)
        except re.error:
            pattern = re.compile(re.escape(self.query), re.IGNORECASE)
        keep: set[str] = set()
        for node in self.tree:
            if pattern.search(node.name) or pattern.search(node.class_name):
                parts = node.path.split("/")
                keep.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        return keep

    @traitlets.observe("query", "_expanded")
    def _on_view_change(self, change: dict[str, Any]) -> None:
        if getattr(self, "_ready", False):
            self._rows = self._visible_rows()

    # -- actions ---------------------------------------------------------------------------
    def _on_custom_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        self.handle_action(content)

    def handle_action(self, content: dict[str, Any]) -> None:
        """Apply one action as the browser sends it; errors become ``message``."""
        action = content.get("action")
        path = str(content.get("path", ""))
        try:
            if action == "expand":
                self.expand(path)
            elif action == "collapse":
                self._expanded = [p for p in self._expanded if p != path]
            elif action == "more":
                self.show_more(path)
            elif action == "select":
                self.selected = path
            elif action == "set_trainable":
                self.set_trainable(path, bool(content.get("value")))
            elif action == "freeze_all":
                self.set_trainable(self.tree.root.path, False)
            elif action == "unfreeze_all":
                self.set_trainable(self.tree.root.path, True)
            elif action == "freeze_up_to":
                self.freeze_up_to(path or self.selected)
            elif action == "freeze_pattern":
                self.freeze_pattern(str(content.get("pattern", self.query)))
            else:
                raise ValueError(f"Unknown explorer action {action!r}.")
        except (HubWidgetsError, KeyError, ValueError) as exc:
            self.message = str(exc).strip("'\"")

    def expand(self, path: str) -> None:
        """Open the node at ``path`` (and its parents): its children are sent now."""
        node = self.tree.find(path)
        parts = node.path.split("/")
        opened = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        self._expanded = list(dict.fromkeys([*self._expanded, *opened]))

    def show_more(self, path: str) -> None:
        """List the next :data:`PAGE_SIZE` children of the node at ``path``."""
        node = self.tree.find(path)
        self._shown[node.path] = self._shown.get(node.path, PAGE_SIZE) + PAGE_SIZE
        self._rows = self._visible_rows()

    def set_trainable(self, path: str, flag: bool) -> None:
        """The row toggle: freeze or unfreeze the node at ``path``."""
        node = self.tree.find(path)
        set_trainable(self.tree, node.path, flag)
        self._after_change([node], flag)

    def freeze_up_to(self, path: str) -> None:
        """Freeze every top-level layer up to and including ``path``; unfreeze the rest."""
        if not path:
            raise ValueError("Select a layer first: everything up to it will be frozen.")
        node = self.tree.find(path)
        freeze_up_to(self.tree, node.path)
        top = self.tree.root.children
        cut = next(i for i, c in enumerate(top) if (node.path + "/").startswith(c.path + "/")) + 1
        self.code = (f"for layer in {self.var_name}.layers[:{cut}]:\n    layer.trainable = False\n"
                     f"for layer in {self.var_name}.layers[{cut}:]:\n    layer.trainable = True")
        self._after_change([], False, code_set=True)

    def freeze_pattern(self, pattern: str) -> None:
        """Freeze every layer whose path or class matches ``pattern`` (a regular expression)."""
        if not pattern.strip():
            raise ValueError("Type a name or regular expression in the search box first.")
        nodes = matching_nodes(self.tree, [pattern])
        for node in nodes:
            set_trainable(self.tree, node.path, False)
        self._after_change(nodes, False)

    def _after_change(self, nodes: list[Node], flag: bool, code_set: bool = False) -> None:
        if not code_set:
            self.code = python_code(self.tree, nodes, flag, self.var_name)
        stale = needs_compile(self.tree)
        self.message = ("The model was compiled before this change: call "
                        f"{self.var_name}.compile(...) again, or training will ignore it."
                        if stale else "")
        if stale and "compile" not in self.code:
            self.code += f"\n{self.var_name}.compile(...)  # again, so training sees the change"
        self.render_rows()

    def refresh(self) -> None:
        """Re-read the model (after training or ``set_weights``), NaN/Inf scan included."""
        self.scan_weights()
        self.render_rows()
