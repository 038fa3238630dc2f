"""Small text and shape helpers shared by the tree, the summary, adapters and widgets."""

from __future__ import annotations

from typing import Any, Literal, Union

Trainable = Union[bool, Literal["mixed"]]
Shape = Any  # a tuple of ints/None, or a list of such tuples for several inputs/outputs


def shape_size(shape: tuple[int | None, ...] | None) -> int:
    """Number of elements of a fully known shape, else 0."""
    if shape is None:
        return 0
    size = 1
    for dim in shape:
        if dim is None:
            return 0
        size *= int(dim)
    return size


def format_shape(shape: Shape) -> str:
    """``(None, 4)`` style text for a shape, or a list of shapes; "?" when unknown."""
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return "[" + ", ".join(format_shape(s) for s in shape) + "]"
    dims = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


def trainable_label(flag: Trainable) -> str:
    """The word used for a trainable flag in summaries and the explorer."""
    return {True: "trainable", False: "frozen"}.get(flag, "mixed")  # type: ignore[arg-type]


def unique_segment(segment: str, taken: set[str]) -> str:
    """``segment`` with the first free ``[n]`` suffix (``hidden[1]``), for a sibling that
    repeats a name; checked against the siblings' segments in ``taken``."""
    n = 1
    while f"{segment}[{n}]" in taken:
        n += 1
    return f"{segment}[{n}]"


def format_bytes(n: int) -> str:
    """Human-readable byte count: ``1.5 KB``, ``97.8 MB``."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} B" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} GB"


def dtype_name(dtype: Any) -> str:
    """``float32`` for a dtype object or name."""
    return str(getattr(dtype, "name", dtype))


def shape_tuple(shape: Any) -> tuple[int | None, ...]:
    """A TensorShape (or sequence) as a tuple of ints and None; () when the rank is unknown."""
    if shape is None:
        return ()
    if hasattr(shape, "as_list"):
        if getattr(shape, "rank", 0) is None:
            return ()
        return tuple(shape.as_list())
    return tuple(None if d is None else int(d) for d in shape)
