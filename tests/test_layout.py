"""The package's dependencies point one way (docs/CONTRACTS.md): no import cycle, and each layer imports only itself and
the layers below it. Imports are read from the source with ast, those inside functions included, so a lazy import
cannot hide a cycle that a later refactoring would turn into an ImportError."""

import ast
from pathlib import Path

import video_adapter

PACKAGE = Path(video_adapter.__file__).parent
# bottom to top: a module may import its own layer and those before it
LAYERS = ("common", "maths", "data", "models", "generation", "evaluation", "training", "interfaces")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[str]]:
    """Every module of the package -> the package modules its source imports anywhere (a package means its
    __init__)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                base = ".".join(base + ([node.module] if node.module else []))
                # `from x import y` imports module x.y where y is one, else the name y of module x
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none (depth-first search)."""
    state, stack = {}, []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def layer(module: str) -> int:
    """The index in LAYERS of a module's layer; the package's own __init__ and __main__ sit above them all."""
    part = module.split(".")[1] if "." in module else ""
    return LAYERS.index(part) if part in LAYERS else len(LAYERS)


def test_the_walker_sees_top_level_and_lazy_imports_and_finds_a_planted_cycle():
    graph = package_imports()
    assert "video_adapter.training.setup" in graph["video_adapter.training.train"]
    assert "video_adapter.models.diffusers" in graph["video_adapter.generation.loading"]  # inside a function
    assert "video_adapter.models.text" in graph["video_adapter.generation.routing"]  # a package: its __init__
    planted = {**graph, "video_adapter.maths.schedule": {"video_adapter.maths.sampling"}}
    cycle = find_cycle(planted)
    assert cycle[0] == cycle[-1] and set(cycle) == {"video_adapter.maths.sampling", "video_adapter.maths.schedule"}


def test_the_package_has_no_import_cycle():
    assert find_cycle(package_imports()) == []


def test_every_module_sits_in_a_layer_and_imports_only_its_own_and_lower_ones():
    graph = package_imports()
    assert {layer(m) for m in graph} == set(range(len(LAYERS) + 1))  # every layer holds modules; none outside them
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if layer(t) > layer(m))
    assert upward == []
