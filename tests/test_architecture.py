"""The package's shape: no import cycles (in-function imports included), a lint that runs,
adapters found along the MRO, and the tree's own invariants (unique paths, parents)."""

from __future__ import annotations

import ast
from pathlib import Path

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


def _hubwidgets_attributes(obj) -> set[str]:
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
        assert _hubwidgets_attributes(model) == {"_hubwidgets_session"}
        session = vars(model)["_hubwidgets_session"]
        assert session.watcher is watcher_of(model) is not None
        for layer in model._flatten_layers(include_self=False, recursive=True):
            assert _hubwidgets_attributes(layer) == set(), layer.name
    assert len(vars(tfk)["_hubwidgets_session"].layers) >= 1  # the hub layer's order is kept
