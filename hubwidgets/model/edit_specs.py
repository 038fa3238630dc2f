"""The weight edits as one table: one :class:`EditSpec` per edit says what it computes, the
code shown for it, its menu label and the numbers the browser asks for.  The table drives the
``hubwidgets.<edit>`` function (:func:`hubwidgets.model.edits.edit_function`), the code
(:func:`hubwidgets.model.codegen.edit_action_code`), the explorer's action and its row menu
(sent to the browser as a synced trait).  Adding an edit is one :func:`register_edit` call.

This module imports neither :mod:`.edits` nor :mod:`.codegen` (both read it), and no
TensorFlow.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .edit_targets import layer_initializer, variable_owners
from .errors import EditError
from .fine_tuned_edits import reset_code, reset_layer, reset_named, scale_code, scale_layer

Compute = Callable[[np.ndarray, Any], np.ndarray]
"""What an edit computes for one variable: ``compute(old_values, variable_info) -> new``."""


@dataclass(frozen=True)
class EditField:
    """A number the browser asks for before it sends the edit (a positional argument)."""

    name: str
    question: str
    example: str = "1"


@dataclass(frozen=True)
class CodeContext:
    """What a spec's ``node_code`` gets to write plain code for one node: the tree, the node,
    the model's variable name, the edit's arguments by name, and ``reach(node)``: plain
    Keras that reaches a Keras layer node with weights (or None)."""

    tree: Any
    node: Any
    var: str
    arguments: dict[str, Any]
    reach: Callable[[Any], str | None]


LayerPlan = Callable[[Any, list[Any], tuple[Any, ...], str, dict[int, Compute], set[int]], None]
"""``plan(owner_node, its_variables, args, action, overrides, dropped)``: fills
``overrides`` (variable key -> Compute) and ``dropped`` (keys left as they are)."""


@dataclass(frozen=True)
class FineTunedMeaning:
    """What an edit means on a LoRA or quantized layer (Keras 3), where editing each variable
    alone would not do what the edit says (:mod:`hubwidgets.model.fine_tuned_edits`).

    ``layer``: the plan for such a layer edited as a whole (a :data:`LayerPlan`; it raises
    :class:`EditError` where the edit has no meaning for that layer).  ``named``:
    ``named(owner_node, variable, overrides)`` for one of its variables named alone (None:
    the edit's own compute).  ``code``: ``code(node, args, getter)``, the plain Keras lines
    for the layer reached by ``getter`` (None: the code says the hubwidgets call does it).
    ``note``: what the edit did there, added to the explorer's message with ``{count}`` and
    ``{names}`` filled in ("" says nothing).
    """

    layer: LayerPlan
    named: Callable[[Any, Any, dict[int, Compute]], None] | None = None
    code: Callable[[Any, tuple[Any, ...], str], list[str]] | None = None
    note: str = ""


@dataclass(frozen=True)
class EditSpec:
    """One weight edit.

    ``make_compute(tree, *args, **kwargs)`` checks the arguments (an :class:`EditError`,
    before the model is touched) and returns the :data:`Compute` for each variable; its
    parameters after ``tree`` are the ``hubwidgets.<name>(model, target, ...)`` parameters.
    The code shown for it (each template formatted with the arguments by name, ``!r`` for
    their Python form): ``layer_code``, plain Keras for one layer reached as ``layer``;
    ``variable_code``, the new value of one variable's array ``w``; ``helper_code``, lines
    (imports, helper functions) before them, or a function of the arguments giving them;
    ``node_code``, a function of a :class:`CodeContext` giving a node's lines itself
    (instead of the templates).  ``label`` and ``fields``: the row menu's entry.
    ``fine_tuned``: what the edit means on a LoRA or quantized layer
    (:class:`FineTunedMeaning`); None refuses it on such a layer as a whole (naming one of
    its float variables still edits that variable).
    ``unchanged_warning``: for an edit that may leave every value as it was (a reset to the
    values already held), why; such a call writes nothing, records no undo step, and warns
    ``"<the call> changed nothing: <unchanged_warning> No undo step was recorded."``.  ""
    records it as any edit.
    """

    name: str
    label: str
    make_compute: Callable[..., Compute]
    doc: str
    fields: tuple[EditField, ...] = ()
    layer_code: str | None = None
    variable_code: str | None = None
    helper_code: tuple[str, ...] | Callable[[dict[str, Any]], list[str]] = ()
    node_code: Callable[[CodeContext], list[str]] | None = None
    fine_tuned: FineTunedMeaning | None = None
    unchanged_warning: str = ""
    parameters: tuple[inspect.Parameter, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        params = tuple(inspect.signature(self.make_compute).parameters.values())[1:]
        object.__setattr__(self, "parameters", params)
        positional = [p.name for p in params if p.default is inspect.Parameter.empty]
        if [f.name for f in self.fields] != positional:
            raise ValueError(f"edit {self.name!r}: the fields the browser asks for "
                             f"({[f.name for f in self.fields]}) must be the required "
                             f"arguments of make_compute ({positional}), in order.")

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Every argument by name, defaults filled in (for the code templates)."""
        bound = inspect.Signature(list(self.parameters)).bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def helper_lines(self, arguments: dict[str, Any]) -> list[str]:
        """The lines the code needs before the per-layer lines."""
        if callable(self.helper_code):
            return list(self.helper_code(arguments))
        return [line.format(**arguments) for line in self.helper_code]

    def menu_entry(self) -> dict[str, Any]:
        """The row menu's entry (JSON-ready)."""
        return {"action": self.name, "label": self.label,
                "fields": [{"name": f.name, "question": f.question, "example": f.example}
                           for f in self.fields]}


EDITS: dict[str, EditSpec] = {}
"""Every weight edit, by name (the built-in ones first, in menu order)."""


def register_edit(spec: EditSpec) -> EditSpec:
    """Add ``spec`` to the table (replacing an edit of the same name); returns it."""
    if not spec.name.isidentifier() or spec.name.startswith("_"):
        raise ValueError(f"An edit's name is a public Python name, not {spec.name!r}.")
    EDITS[spec.name] = spec
    return spec


def unregister_edit(name: str) -> None:
    """Remove the edit ``name`` from the table (nothing when it is not there)."""
    EDITS.pop(name, None)


def edit_spec(name: str) -> EditSpec:
    """The spec of the edit ``name``; an :class:`EditError` naming the known edits."""
    spec = EDITS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise EditError(f"The weight edits are {', '.join(EDITS)}; not {name!r}.")
    return spec


# -- the built-in edits ----------------------------------------------------------------------
def _scaler(_tree: Any, factor: float) -> Compute:
    value = _finite_number(factor, "factor")

    def scaled(old: np.ndarray, _var: Any) -> np.ndarray:
        with np.errstate(over="ignore"):
            cast = np.asarray(value, dtype=old.dtype)
        if not np.isfinite(cast):
            raise EditError(f"factor {factor!r} is not finite in {old.dtype}; nothing changed.")
        return old * cast
    return scaled


def _pruner(_tree: Any, fraction: float) -> Compute:
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
    return pruned


def _noiser(_tree: Any, std: float, seed: int | None = None, relative: bool = False) -> Compute:
    scale = _finite_number(std, "std")
    if scale < 0:
        raise EditError(f"std must be >= 0, got {std!r}; nothing changed.")
    rng = np.random.default_rng(seed)

    def noisy(old: np.ndarray, _var: Any) -> np.ndarray:
        wide = old.astype(np.float64)
        sigma = scale * float(wide.std()) if relative and wide.size else scale
        return (wide + rng.normal(0.0, sigma, size=old.shape)).astype(old.dtype)
    return noisy


def _resetter(tree: Any) -> Compute:
    owners = variable_owners(tree)

    def initial(old: np.ndarray, info: Any) -> np.ndarray:
        owner = owners.get(info.key)
        init = layer_initializer(owner.obj if owner is not None else None, info.variable)
        if init is None:
            raise EditError(
                f"{info.path!r} has no known initializer (a restored Hub or SavedModel "
                "variable keeps only its values); nothing changed. Reset only Keras layers, "
                "or restore a snapshot taken before training.")
        init = _freshly_seeded(init)
        with warnings.catch_warnings():  # tf_keras: "unseeded ... identical values", as said
            warnings.filterwarnings("ignore", message=".*unseeded.*", category=UserWarning)
            value = init(tuple(old.shape), dtype=str(old.dtype))
        return np.asarray(_to_numpy(value), dtype=old.dtype).reshape(old.shape)
    return initial


def _freshly_seeded(init: Any) -> Any:
    """A Keras 3 random initializer built without a seed fixes one at construction and gives
    the same values at every call: a copy with a new seed draws new values, as the user of an
    unseeded initializer expects.  The seed is drawn as Keras draws its default seeds (Python's
    ``random``), so ``keras.utils.set_random_seed`` makes resets reproducible.  Seeded
    initializers (and tf_keras') are called as they are."""
    import random

    if getattr(init, "_init_seed", 0) is not None or not hasattr(init, "get_config"):
        return init
    try:
        config = dict(init.get_config())
        config["seed"] = random.randint(1, int(1e9))
        return type(init).from_config(config)
    except Exception:  # noqa: BLE001 - a custom initializer: called as it is
        return init


def _finite_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise EditError(f"{what} must be a number, got {value!r}; nothing changed.")
    out = float(value)
    if not math.isfinite(out):
        raise EditError(f"{what} must be finite, got {value!r}; nothing changed.")
    return out


def _to_numpy(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _reset_lines(ctx: CodeContext) -> list[str]:
    """Each variable of the node back to its layer's initializer, in plain Keras."""
    from .adapters.common import short_name

    owners = variable_owners(ctx.tree)
    lines, current = [], None
    for info in ctx.node.all_variables():
        owner_node = owners.get(info.key)
        layer = owner_node.obj if owner_node is not None else None
        name = short_name(info.variable)
        owner = ctx.reach(owner_node)
        if layer_initializer(layer, info.variable) is None or owner is None:
            lines.append(f"# {info.path}: no initializer reachable from plain code; left as is")
            continue
        if owner != current:
            lines.append(f"layer = {owner}")
            current = owner
        lines.append(f"layer.{name}.assign(layer.{name}_initializer(layer.{name}.shape, "
                     f"dtype=layer.{name}.dtype))")
    return lines


def _noise_helpers(arguments: dict[str, Any]) -> list[str]:
    sigma = "std * float(wide.std()) if wide.size else std" if arguments.get("relative") \
        else "std"
    return ["import numpy as np", f"rng = np.random.default_rng({arguments.get('seed')!r})",
            "def noisy(w, std):",
            "    wide = w.astype('float64')",
            f"    sigma = {sigma}",
            "    return (wide + rng.normal(0.0, sigma, w.shape)).astype(w.dtype)"]


register_edit(EditSpec(
    name="scale_weights", label="Scale\u2026", make_compute=_scaler,
    fields=(EditField("factor", "Multiply the weights by", "2"),),
    layer_code="layer.set_weights([w * {factor!r} for w in layer.get_weights()])",
    variable_code="w * {factor!r}",
    fine_tuned=FineTunedMeaning(
        layer=scale_layer, code=scale_code,
        note=("On {count} LoRA/quantized layer(s) ({names}) the output is scaled: base kernel, "
              "lora_*_b and bias times the factor (not lora_*_a); int8 codes kept, their "
              "scale divided by it.")),
    doc="""Multiply every variable of ``target`` by ``factor``, in the variable's own dtype
    (``w * factor`` with ``factor`` cast to that dtype: bit for bit what numpy gives)."""))

register_edit(EditSpec(
    name="reset_weights", label="Reset to initializers", make_compute=_resetter,
    node_code=_reset_lines,
    fine_tuned=FineTunedMeaning(
        layer=reset_layer, named=reset_named, code=reset_code,
        note=("On {count} LoRA layer(s) ({names}) only lora_*_b went back to zeros: the layer "
              "computes with its base weights again.")),
    unchanged_warning=("the initializers gave the values the variables already hold (e.g. "
                       "zeros for a zero bias)."),
    doc="""Re-initialize every variable of ``target`` with its layer's own initializer
    (``layer.<name>_initializer``: ``kernel_initializer``, ``bias_initializer``,
    ``gamma_initializer``, ``moving_variance_initializer``...), Keras 3 and tf_keras alike.
    A variable with no known initializer (a restored Hub variable, a plain ``tf.Module``'s)
    is refused with an :class:`EditError`, and nothing changes.

    Seeded or unseeded, an initializer is called as Keras calls it: tf_keras' unseeded
    initializers give the same values at every call, so there a reset brings back the
    layer's first initial values; Keras 3's unseeded ones draw new values."""))

register_edit(EditSpec(
    name="prune_weights", label="Prune\u2026", make_compute=_pruner,
    fields=(EditField("fraction", "Zero this fraction of the smallest weights (0 to 1)",
                      "0.5"),),
    layer_code="layer.set_weights([prune(w, {fraction!r}) for w in layer.get_weights()])",
    variable_code="prune(w, {fraction!r})",
    helper_code=(
        "import math", "import numpy as np",
        "def prune(w, fraction):  # the smallest |w| to zero; ties in C order",
        "    w = w.copy()",
        "    order = np.argsort(np.abs(w.astype('float64')), axis=None, kind='stable')",
        "    w.flat[order[:math.floor(fraction * w.size)]] = 0",
        "    return w"),
    doc="""Set the ``floor(fraction * size)`` smallest-magnitude values of each variable of
    ``target`` to zero.  Ties are broken by position (the earlier value, in C order, goes
    first), so the result is deterministic; NaN counts as the largest magnitude."""))

register_edit(EditSpec(
    name="add_noise", label="Add noise\u2026", make_compute=_noiser,
    fields=(EditField("std", "Add Gaussian noise with standard deviation", "0.01"),),
    layer_code="layer.set_weights([noisy(w, {std!r}) for w in layer.get_weights()])",
    variable_code="noisy(w, {std!r})", helper_code=_noise_helpers,
    doc="""Add Gaussian noise to every variable of ``target``.  Absolute by default: each value
    gets N(0, std**2); with ``relative=True`` the noise of each variable is ``std`` times that
    variable's own standard deviation (a constant variable then gets none).  The noise is
    drawn in float64 from ``numpy.random.default_rng(seed)`` (variables in model order), added
    in float64, and rounded once to the variable's dtype."""))
