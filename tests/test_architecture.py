"""The package's shape: no import cycles (in-function imports included), the backend free of
widget imports, one public surface (the TYPE_CHECKING block names every export; every error
and warning in errors.py, exported), every widget refusing unknown keywords, adapters found
along the MRO, the tree's own invariants (unique paths, parents), one hubwidgets attribute
on a user's model, and a README whose Layout and "Where to add" name what exists.  Private
TensorFlow in one module: tests/test_tf_compat.py."""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import hubwidgets as hw

PACKAGE = Path(hw.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """Modules of the package that ``path`` imports anywhere (functions too), except under
    ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("hubwidgets"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("hubwidgets"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path, name) if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    # the lazy public names in hubwidgets/__init__.py point down into the package only
    graph["hubwidgets"] = set()
    assert "hubwidgets.model.tree" in graph and graph["hubwidgets.model.freeze"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_backend_never_imports_widgets():
    graph = import_graph()
    backend = [m for m in graph if m.startswith("hubwidgets.model")]
    assert backend and not [(m, d) for m in backend for d in graph[m]
                            if d.startswith("hubwidgets.widgets")]


def _type_checking_imports() -> dict[str, str]:
    """Name -> module of every import under ``if TYPE_CHECKING:`` in hubwidgets/__init__.py."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    [block] = [n for n in tree.body if isinstance(n, ast.If)
               and getattr(n.test, "id", "") == "TYPE_CHECKING"]
    found = {}
    for node in ast.walk(block):
        if isinstance(node, ast.ImportFrom):
            module = "hubwidgets" + ("." + node.module if node.module else "")
            assert node.level == 1, ast.dump(node)
            found.update({alias.asname or alias.name: module for alias in node.names})
    return found


def _defined_in_init() -> set[str]:
    """The public functions hubwidgets/__init__.py defines itself (the IPython hooks)."""
    return {n.name for n in ast.parse((PACKAGE / "__init__.py").read_text()).body
            if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}


def test_the_type_checking_block_names_every_public_name_from_its_module():
    listed = _type_checking_imports()
    exports = {name: module for name, module in hw._EXPORTS.items()
               if name not in _defined_in_init()}
    assert {"explore", "Dashboard", "LayerExplorer", "WeightPlot", "MessageError"} <= set(listed)
    assert listed == exports
    assert set(hw.__all__) == set(hw._EXPORTS)


def test_every_public_name_is_what_its_module_defines():
    import importlib

    assert _defined_in_init() == {"load_ipython_extension", "unload_ipython_extension"}
    for name, module in hw._EXPORTS.items():
        if name not in _defined_in_init():
            assert getattr(hw, name) is getattr(importlib.import_module(module), name), name


def _exception_classes() -> dict[str, str]:
    """Every class the package defines that derives from an exception or warning class
    (by name: ...Error, ...Warning, Exception), with its module."""
    found = {}
    for name, path in {_module_name(p): p for p in PACKAGE.rglob("*.py")}.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Warning"))
                    or getattr(b, "id", "") in ("Exception", "BaseException")
                    for b in node.bases):
                found[node.name] = name
    return found


INTERNAL_ERRORS = {"OutOfDate"}  # a signal weight_stats catches; it never reaches the user


def test_every_error_and_warning_lives_in_errors_py_and_is_exported():
    from hubwidgets.model import errors

    classes = _exception_classes()
    assert {name: module for name, module in classes.items()
            if module != "hubwidgets.model.errors"} == {}
    for name in classes:
        cls = getattr(errors, name)
        assert issubclass(cls, (errors.HubWidgetsError, errors.HubWidgetsWarning)), name
        if name not in INTERNAL_ERRORS:
            assert hw._EXPORTS.get(name) == "hubwidgets.model.errors", name
    assert issubclass(errors.HubWidgetsWarning, UserWarning)
    assert {"MessageError", "ModelGoneError", "UnknownKeywordError", "UndoHistoryWarning"} <= set(
        classes)


@pytest.mark.parametrize("module, name", [
    ("hubwidgets.model.edits", "EditError"), ("hubwidgets.model.edits", "UndoHistoryWarning"),
    ("hubwidgets.model.stats", "NonFiniteWeightsWarning"),
    ("hubwidgets.model.watch", "ReplicaDriftWarning"),
    ("hubwidgets.model.matching", "SearchTooSlowError"),
    ("hubwidgets.model.memory_guard", "InsufficientMemoryError"),
    ("hubwidgets.model.probe", "ProbeError"), ("hubwidgets.model.host_stats", "OutOfDate"),
    ("hubwidgets.widgets.session_view", "ModelGoneError"),
    ("hubwidgets.widgets.actions", "MessageError"),
])
def test_an_error_imported_from_its_old_module_is_the_same_class(module, name):
    import importlib

    from hubwidgets.model import errors

    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_every_widget_class_refuses_unknown_keywords():
    import importlib

    import ipywidgets

    from hubwidgets.widgets.keywords import KnownKeywords

    for path in (PACKAGE / "widgets").glob("*.py"):
        importlib.import_module(_module_name(path))
    widgets = [cls for cls in _subclasses(ipywidgets.Widget)  # the classes in use now (a test
               if cls.__module__.startswith("hubwidgets.")  # that imports the package again
               and getattr(sys.modules.get(cls.__module__), cls.__name__, None) is cls]  # leaves old ones)
    assert {"Dashboard", "LayerExplorer", "WeightPlot", "StatefulFigure"} <= {
        cls.__name__ for cls in widgets}
    assert [cls for cls in widgets if cls.__mro__[1] is not KnownKeywords] == []


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_adapters_are_found_along_the_mro(keras, tf_keras, hub, tf, plain_module):
    from hubwidgets.model.adapters.keras import KerasAdapter
    from hubwidgets.model.adapters.registry import adapter_for, keras_generation
    from hubwidgets.model.adapters.trackable import TrackableAdapter

    class MyDense(keras.layers.Dense):
        pass

    assert keras_generation(MyDense(2)) == "Keras 3"
    assert keras_generation(tf_keras.layers.Dense(2)) == "tf_keras"
    assert isinstance(adapter_for(hub.KerasLayer(lambda x: x)), KerasAdapter)  # a tf_keras layer
    assert isinstance(adapter_for(plain_module), TrackableAdapter)
    assert adapter_for(object()) is None and adapter_for([1, 2]) is None


def test_every_node_knows_its_parent_and_paths_are_unique(k3_nested_shared, tfk_saved_model):
    for model in (k3_nested_shared, tfk_saved_model):
        tree = hw.inspect(model)
        nodes = list(tree)
        assert len({n.path for n in nodes}) == len(nodes)
        assert tree.root.parent is None
        for node in nodes[1:]:
            assert node in list(node.parent.children)
            assert node.path.startswith(node.parent.path + "/")
            assert tree.ancestors(node.path)[-1] is node.parent
            assert tree.find(node.path) is node


# -- what hubwidgets leaves on the user's objects --------------------------------------------
def _hubwidgets_attributes(model) -> dict[str, set[str]]:
    """Every attribute whose name starts with "_hubwidgets" on ``model`` itself, on its
    layers and on its variables."""
    def own(obj):
        return {name for name in getattr(obj, "__dict__", {}) if name.startswith("_hubwidgets")}

    layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True)]
    return {"model": own(model),
            "layers": set().union(*map(own, layers)),
            "variables": set().union(*map(own, model.weights))}


def _use_every_feature(model, part, x, y):
    """Explore, freeze and unfreeze ``part`` and the first layer, edit, undo, redo, snapshot,
    restore, diff, compile then freeze ``part`` (stale compile), watch a fit, probe; yields
    after each step."""
    first, last = model.layers[0].name, model.layers[-1].name
    hw.explore(model)
    hw.undo_history(model).budget_bytes = 10 ** 6  # every step kept: no warning
    yield
    for freeze, target in ((hw.freeze, part), (hw.unfreeze, part), (hw.freeze, first),
                           (hw.unfreeze, None)):
        freeze(model, *([target] if target else []))
        yield
    hw.scale_weights(model, last, 2.0)
    yield
    hw.undo(model)
    hw.redo(model)
    yield
    before = hw.snapshot(model)
    hw.restore(model, before)
    hw.diff(before, model)
    yield
    model.compile(optimizer="sgd", loss="mse")
    hw.freeze(model, part)
    assert hw.needs_compile(model)
    yield
    hw.unfreeze(model)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[hw.watch(model)])
    yield
    hw.probe(model, x, y)
    yield


@pytest.fixture(scope="module")
def attributes_seen(keras, tf_keras, hub, hub_backbone):
    """The hubwidgets attributes seen, after any step of :func:`_use_every_feature`, on a
    Keras 3 model with a LoRA layer and on a tf_keras model holding a Hub module."""
    keras.utils.set_random_seed(0)
    k3 = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="a"),
                           keras.layers.Dense(2, name="b")], name="used")
    hw.enable_lora(k3, "a", 2)
    tfk = tf_keras.Sequential([tf_keras.Input((4,)), hub.KerasLayer(hub_backbone, trainable=True,
                                                                    name="hub"),
                               tf_keras.layers.Dense(2, name="head")], name="used_tfk")
    x, y = np.ones((8, 4), np.float32), np.zeros((8, 2), np.float32)
    seen = {}
    for generation, model, part in (("keras3", k3, "used/a/kernel"),
                                    ("tf_keras", tfk, "used_tfk/hub/block2_dense")):
        found = {"model": set(), "layers": set(), "variables": set()}
        for _ in _use_every_feature(model, part, x, y):
            for kind, names in _hubwidgets_attributes(model).items():
                found[kind] |= names
        seen[generation] = found
    return seen


# What hubwidgets sets on a user's objects: the session handle only (issue 26 item 1; the
# watcher, compile staleness and the per-layer notes are fields of the session)
ATTRIBUTES_TODAY = {"model": {"_hubwidgets_session"}, "layers": set(), "variables": set()}


@pytest.mark.parametrize("generation", ["keras3", "tf_keras"])
def test_the_attributes_hubwidgets_sets_on_a_model_are_the_known_ones(attributes_seen,
                                                                     generation):
    from hubwidgets.model.session import SESSION_ATTR

    found = attributes_seen[generation]
    assert SESSION_ATTR in found["model"]
    assert {kind: names - ATTRIBUTES_TODAY[kind] for kind, names in found.items()} == {
        "model": set(), "layers": set(), "variables": set()}


@pytest.mark.parametrize("generation", ["keras3", "tf_keras"])
def test_the_only_attribute_hubwidgets_sets_on_a_model_is_its_session(attributes_seen,
                                                                      generation):
    from hubwidgets.model.session import SESSION_ATTR

    assert attributes_seen[generation] == {
        "model": {SESSION_ATTR}, "layers": set(), "variables": set()}


def _own_hubwidgets_attributes(obj) -> set[str]:
    return {name for name in vars(obj) if name.startswith("_hubwidgets")}


def _explore_freeze_edit_compile_watch(model, K, part, x, y):
    """Everything that used to leave state on the model: explore, a part freeze after
    compile (compile staleness), edits with undo, LoRA scope freezes, a watched fit."""
    hw.explore(model)
    model.compile(optimizer=K.optimizers.SGD(0.01), loss="mse")
    hw.freeze(model, part)  # one variable: Keras' compile record cannot show it
    assert hw.needs_compile(model)
    hw.unfreeze(model, part)
    hw.freeze(model)
    hw.unfreeze(model)
    hw.scale_weights(model, "head", 0.5)
    hw.undo(model)
    model.compile(optimizer=K.optimizers.SGD(0.01), loss="mse")
    callback = hw.watch(model)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    hw.explore(model)  # finds the watcher again


def test_hubwidgets_puts_one_attribute_on_a_model(keras, tf_keras, hub, hub_backbone):
    import numpy as np

    from hubwidgets.model.watch import watcher_of

    x, y = np.ones((4, 4), "float32"), np.zeros((4, 2), "float32")
    k3 = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="body"),
                           keras.layers.Dense(2, name="head")])
    k3.get_layer("body").enable_lora(2)  # a freeze of a scope with adapters keeps flags
    _explore_freeze_edit_compile_watch(k3, keras, "head/kernel", x, y)
    tfk = tf_keras.Sequential([tf_keras.Input((4,)),
                               hub.KerasLayer(hub_backbone, trainable=True, name="hub"),
                               tf_keras.layers.Dense(2, name="head")])
    # one variable of a Hub layer: tf_keras keeps the layer's weight order by hand
    _explore_freeze_edit_compile_watch(tfk, tf_keras, "hub/block2_dense/kernel", x, y)
    for model in (k3, tfk):
        assert _own_hubwidgets_attributes(model) == {"_hubwidgets_session"}
        session = vars(model)["_hubwidgets_session"]
        assert session.watcher is watcher_of(model) is not None
        for layer in model._flatten_layers(include_self=False, recursive=True):
            assert _own_hubwidgets_attributes(layer) == set(), layer.name
    assert len(vars(tfk)["_hubwidgets_session"].layers) >= 1  # the hub layer's order is kept


# -- the README's layout and "Where to add" name what exists ---------------------------------
README = PACKAGE.parent / "README.md"


def _readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    return text[start:text.index("\n## ", start + 1) if "\n## " in text[start + 1:] else None]


def test_the_readme_layout_names_every_module_and_only_files_that_exist():
    layout = _readme_section("## Layout")
    block = layout[layout.index("```") + 3:]
    block = block[:block.index("```")]
    named = set(re.findall(r"\b(\w+\.(?:py|c))\b", block))
    files = {p.name for p in PACKAGE.rglob("*") if p.suffix in (".py", ".c")}
    unnamed = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*")
                     if p.suffix in (".py", ".c") and p.name != "__init__.py"
                     and p.name not in named)
    assert unnamed == [], f"modules the README's Layout does not name: {unnamed}"
    assert sorted(named - files - {"__init__.py"}) == []


def test_the_places_where_to_add_names_are_real():
    """Each `module.name` (or `module.Class.member`, or a full `hubwidgets....` path) in
    "Where to add" names something that exists: the one place to add an edit, an action, a
    panel, an adapter or a statistic.  (`session.x` there is a ModelSession's attribute.)"""
    import importlib

    from hubwidgets.model.session import ModelSession
    from hubwidgets.model.session_cache import SessionCache

    section = _readme_section("Where to add:")
    modules = {p.stem: _module_name(p) for p in PACKAGE.rglob("*.py") if p.stem != "__init__"}
    checked = []
    for dotted in set(re.findall(r"`([A-Za-z_][\w./]*)[`(]", section)):
        parts = dotted.split(".")
        if parts[-1] in ("py", "js", "c", "css"):  # a file
            assert (PACKAGE.parent / dotted).exists() or list(
                PACKAGE.rglob(dotted.rsplit("/", 1)[-1])), f"no file {dotted!r}"
            checked.append(dotted)
            continue
        if parts[0] == "session":  # a session's attribute: its class, or its cache's
            assert hasattr(ModelSession, parts[1]) or parts[1] == "cache", dotted
            if parts[1] == "cache" and len(parts) > 2:
                assert hasattr(SessionCache, parts[2]), dotted
            checked.append(dotted)
            continue
        if parts[0] == "hubwidgets":
            known = {_module_name(p) for p in PACKAGE.rglob("*.py")}
            cut = max(i for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known)
            module, rest = ".".join(parts[:cut]), parts[cut:]
        elif parts[0] in modules and len(parts) > 1:
            module, rest = modules[parts[0]], parts[1:]
        else:
            continue
        obj = importlib.import_module(module)
        for part in rest:
            assert hasattr(obj, part), f"README names {dotted!r}; {part!r} does not exist"
            obj = getattr(obj, part)
        checked.append(dotted)
    assert {"stats._from_reduction", "host_stats.numpy_reduction", "stats._Kernels",
            "host_stats.pattern_reduction", "host_stats.Reduction", "session.update",
            "session.cache.cached", "hubwidgets.model.session.cached_for_tree"} <= set(checked)

    from hubwidgets.model.edit_specs import EditSpec
    from hubwidgets.model.stats import WeightStats
    from hubwidgets.widgets.explorer_rows import ROW_MENU_ACTIONS
    from hubwidgets.widgets.session_view import SessionView

    assert callable(WeightStats.to_dict) and ROW_MENU_ACTIONS
    assert {"fine_tuned", "unchanged_warning", "make_compute"} <= {
        f.name for f in dataclasses.fields(EditSpec)}
    assert callable(SessionView._follow) and callable(SessionView._on_session_change)
