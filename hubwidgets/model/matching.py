"""Finding layers by pattern: one matcher for the search box (:func:`search_nodes`) and for
freezing by path, name or pattern (:func:`matching_nodes`, used by ``hubwidgets.freeze``).

Patterns are regular expressions run by the ``regex`` package with a time budget, so a
catastrophic pattern such as ``(\\w+\\w+)+!`` answers "too slow" instead of holding the
kernel for minutes; the search box searches a pattern that is not a valid expression as
plain text.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable

import regex

from .errors import ArgumentError, SearchTooSlowError
from .inspect import inspect
from .tree import Node

if TYPE_CHECKING:
    from .tree import ModelTree, VariableInfo

SEARCH_BUDGET_S = 0.5  # the whole search, all nodes together
MAX_PATTERN_LENGTH = 1000


def compile_search(pattern: str) -> "regex.Pattern[str]":
    """The case-insensitive expression the search box runs (plain text when ``pattern`` is
    not a valid expression)."""
    if not isinstance(pattern, str):
        raise TypeError(f"A search pattern is a string, got {type(pattern).__name__}.")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ArgumentError(f"The search pattern is {len(pattern):,} characters long; "
                         f"keep it under {MAX_PATTERN_LENGTH:,}.")
    try:
        return regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)
    except regex.error:
        return regex.compile(regex.escape(pattern), regex.IGNORECASE)


def is_regular_expression(pattern: str) -> bool:
    """Whether ``pattern`` compiles as a regular expression (else it is searched as text)."""
    try:
        regex.compile(pattern, regex.VERSION0)
        return True
    except regex.error:
        return False


def search_nodes(tree: "ModelTree", pattern: str,
                 budget_s: float = SEARCH_BUDGET_S) -> list["Node"]:
    """Every node (the root excepted) whose name or class matches ``pattern`` as the search
    box reads it: a case-insensitive regular expression, or plain text.

    Raises :class:`SearchTooSlowError` when matching takes longer than ``budget_s``.
    """
    expression = compile_search(pattern)
    deadline = time.monotonic() + budget_s
    hits = []
    for node in tree:
        if node is tree.root:
            continue
        if _matches(expression, (node.name, node.class_name), deadline, pattern):
            hits.append(node)
    return hits


def _matches(expression: "regex.Pattern[str]", texts: Iterable[str], deadline: float,
             pattern: str, full: bool = False) -> bool:
    run = expression.fullmatch if full else expression.search
    for text in texts:
        left = deadline - time.monotonic()
        try:
            if left <= 0 or run(text, timeout=left) is not None:
                if left <= 0:
                    raise TimeoutError
                return True
        except TimeoutError:
            raise SearchTooSlowError(
                f"The search {pattern!r} is too slow (over {SEARCH_BUDGET_S:g} s): it "
                "backtracks catastrophically. Simplify it, e.g. drop nested repeats such "
                "as (a+)+.") from None
    return False


def regex_search(expression: "regex.Pattern[str]", text: str, deadline: float,
                 pattern: str) -> bool:
    """One budgeted search of ``text`` (for callers that match other fields)."""
    return _matches(expression, (text,), deadline, pattern)


def regex_fullmatch(expression: "regex.Pattern[str]", text: str, deadline: float,
                    pattern: str) -> bool:
    """Whether all of ``text`` matches, within the same budget and with the same
    :class:`SearchTooSlowError` as :func:`regex_search`."""
    return _matches(expression, (text,), deadline, pattern, full=True)


def search(model: Any, pattern: str) -> list["Node"]:
    """The layers the explorer's search box shows for ``pattern``: nodes whose name or class
    matches it as a case-insensitive regular expression (plain text if it is not one).
    ``hubwidgets.freeze(model, *[n.path for n in hubwidgets.search(model, "block2")])``
    freezes exactly what the box shows."""
    return search_nodes(inspect(model), pattern)


def matching_nodes(tree: "ModelTree", paths_or_patterns: Iterable[str]) -> list["Node"]:
    """Nodes named by each entry: an exact path or name, else a regular expression searched
    in paths and class names, else variables (by path, or a regular expression searched in
    their paths and TF names, so ``"embedding/"`` picks a name scope).  A variable comes back
    as a one-variable node.  Raises ``KeyError`` for an entry that matches nothing."""
    entries = list(paths_or_patterns)
    check_entries(entries)
    found: list["Node"] = []
    for entry in entries:
        named = tree.named(entry) if "/" not in entry.strip("/") else []
        if len(named) > 1:  # a name several layers share names them all
            found += named
            continue
        try:
            found.append(tree.find(entry))
            continue
        except KeyError as exc:
            miss = exc
        if len(entry) > MAX_PATTERN_LENGTH:
            raise KeyError(f"No layer or variable is named by the {len(entry):,}-character "
                           f"text given, and it is too long to be used as a regular expression "
                           f"(at most {MAX_PATTERN_LENGTH:,} characters).")
        try:
            pattern = regex.compile(entry, regex.VERSION0)
        except regex.error as exc:
            raise KeyError(f"{entry!r} is neither a layer path or name nor a valid regular "
                           f"expression ({exc}). {miss.args[0]}") from None
        deadline = time.monotonic() + SEARCH_BUDGET_S
        hits = [n for n in tree if n is not tree.root
                and (regex_search(pattern, n.path, deadline, entry)
                     or regex_fullmatch(pattern, n.class_name, deadline, entry))]
        if not hits:
            hits = [variable_node(tree, v) for v in tree.variables()
                    if v.path == entry or regex_search(pattern, v.path, deadline, entry)
                    or regex_search(pattern, str(getattr(v.variable, "name", "")), deadline,
                                    entry)]
        if not hits:
            raise miss
        found += outermost(hits)
    return found


def check_entries(entries: list[Any]) -> None:
    """Raise a clear error for an entry that is not a non-empty string."""
    for entry in entries:
        if not isinstance(entry, str):
            raise TypeError(
                f"Layers are named by strings (a path, a name or a regular expression), got "
                f"{type(entry).__name__} {entry!r}. Pass them as separate arguments: "
                "hubwidgets.freeze(model, 'dense_1', 'dense_2').")
        if not entry.strip():
            raise ArgumentError("An empty pattern matches nothing. To change the whole model, "
                             "call hubwidgets.freeze(model) or unfreeze(model) with no pattern.")


def variable_node(tree: "ModelTree", var: "VariableInfo") -> "Node":
    """A node standing for one variable, so a variable can be frozen like a layer."""
    owner = node_of_variable(tree, var.path)
    node = Node(name=var.name, path=var.path, class_name="Variable", variables=[var],
                _tree=tree)
    node.parent = owner
    return node


def node_of_variable(tree: "ModelTree", path: str) -> "Node":
    """The node that holds the variable at ``path``."""
    var = tree.find_variable(path)
    return next(n for n in tree if any(v is var for v in n.variables))


def outermost(nodes: list["Node"]) -> list["Node"]:
    """Drop nodes that lie inside another node of the list."""
    paths = [n.path for n in nodes]
    return [n for n in nodes if not any(n.path.startswith(p + "/") for p in paths if p != n.path)]
