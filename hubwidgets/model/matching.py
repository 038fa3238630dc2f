"""Finding layers by pattern: one matcher for the search box and for freezing what it shows.

Patterns are regular expressions run by the ``regex`` package with a time budget, so a
catastrophic pattern such as ``(\\w+\\w+)+!`` answers "too slow" instead of holding the
kernel for minutes; a pattern that is not a valid expression is searched as plain text.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable

import regex

from .errors import HubWidgetsError
from .inspect import inspect

if TYPE_CHECKING:
    from .tree import ModelTree, Node

SEARCH_BUDGET_S = 0.5  # the whole search, all nodes together
MAX_PATTERN_LENGTH = 1000


class SearchTooSlowError(HubWidgetsError, ValueError):
    """A pattern took longer than the search budget."""


def compile_search(pattern: str) -> "regex.Pattern[str]":
    """The case-insensitive expression the search box runs (plain text when ``pattern`` is
    not a valid expression)."""
    if not isinstance(pattern, str):
        raise TypeError(f"A search pattern is a string, got {type(pattern).__name__}.")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"The search pattern is {len(pattern):,} characters long; "
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
             pattern: str) -> bool:
    for text in texts:
        left = deadline - time.monotonic()
        try:
            if left <= 0 or expression.search(text, timeout=left) is not None:
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


def search(model: Any, pattern: str) -> list["Node"]:
    """The layers the explorer's search box shows for ``pattern``: nodes whose name or class
    matches it as a case-insensitive regular expression (plain text if it is not one).
    ``hubwidgets.freeze(model, *[n.path for n in hubwidgets.search(model, "block2")])``
    freezes exactly what the box shows."""
    return search_nodes(inspect(model), pattern)
