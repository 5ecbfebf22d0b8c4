"""The import graph follows the data: features -> models -> training -> serving, the CLI on top.

`omnirec` is the ground floor (settings, errors, logging, how to talk to Redis): every layer
stands on it and it imports none of them. Models fit on plain arrays behind the protocols in
`models.base` and never import the data layer. Training and serving both build on models and
features; neither imports the other (the service finds and loads a version through `models`,
reads features through `features`). The CLI (`cli`) sits above them all. Every import counts,
including those inside functions, and no module reaches itself again through others: the graph
has no circles (a circle cut only by an import inside a function is still a circle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["omnirec", "features", "models", "training", "serving", "cli"]
MAY_IMPORT = {
    "omnirec": {"omnirec"},
    "features": {"omnirec", "features"},
    "models": {"omnirec", "models"},
    "training": {"omnirec", "features", "models", "training"},
    "serving": {"omnirec", "features", "models", "serving"},
    "cli": set(LAYERS),
}


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to, or None for outside code (numpy, tests, ...)."""
    top = module.split(".")[0]
    return top if top in LAYERS else None


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in `path`, relative imports resolved in `package`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.lineno, base))
            # `from serving import engine` names a module too
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module in the layered packages under `root`."""
    found = {}
    for top in LAYERS:
        for path in sorted((root / top).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def violations(root: Path) -> list[str]:
    """Every import in the layered packages under `root` that runs against the flow."""
    wrong = []
    for module, path in modules(root).items():
        own = layer_of(module)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for line, target in imported_modules(path, package):
            theirs = layer_of(target)
            if own and theirs and theirs not in MAY_IMPORT[own]:
                wrong.append(f"{path.relative_to(root)}:{line} ({own}) imports {target} ({theirs})")
    return sorted(set(wrong))


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project's modules it imports (a name imported from a module is that module)."""
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        targets = {target for _, target in imported_modules(path, package) if target in known}
        graph[module] = targets - {module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_imports_flow_with_the_data() -> None:
    assert violations(REPO) == []


def test_no_module_imports_itself_through_others() -> None:
    assert circles(import_graph(REPO)) == []


@pytest.mark.parametrize(
    ("importer", "statement", "expected"),
    [
        (
            "features/store.py",
            "from models.base import Recommender",
            "features/store.py:1 (features) imports models.base (models)",
        ),
        (
            "models/base.py",
            "    import training.pipeline",
            "models/base.py:1 (models) imports training.pipeline (training)",
        ),
        (
            "models/ranked.py",
            "from features.interactions import Interactions",
            "models/ranked.py:1 (models) imports features.interactions (features)",
        ),
        (
            "serving/runtime.py",
            "from training import publish",
            "serving/runtime.py:1 (serving) imports training (training)",
        ),
        (
            "omnirec/settings.py",
            "from serving.app import create_app",
            "omnirec/settings.py:1 (omnirec) imports serving.app (serving)",
        ),
        (
            "training/pipeline.py",
            "from cli.commands import data",
            "training/pipeline.py:1 (training) imports cli.commands (cli)",
        ),
    ],
)
def test_the_check_finds_an_import_against_the_flow(
    tmp_path: Path, importer: str, statement: str, expected: str
) -> None:
    for top in LAYERS:
        (tmp_path / top).mkdir()
        (tmp_path / top / "__init__.py").write_text("")
    (tmp_path / importer).write_text(statement.strip() + "\n")
    (tmp_path / "cli" / "commands").mkdir()
    (tmp_path / "cli" / "commands" / "data.py").write_text("from serving.app import create_app\n")
    assert expected in violations(tmp_path)
    # the CLI on top may import every layer
    assert not [v for v in violations(tmp_path) if v.startswith("cli/")]


def test_the_check_finds_a_circle_cut_by_an_import_inside_a_function(tmp_path: Path) -> None:
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "__init__.py").write_text("")
    (tmp_path / "serving" / "engine.py").write_text("from serving.shadow import Shadow\n")
    (tmp_path / "serving" / "shadow.py").write_text(
        "def later():\n    from serving.engine import Engine\n"
    )
    (tmp_path / "serving" / "alone.py").write_text("from serving import engine\n")
    assert circles(import_graph(tmp_path)) == [["serving.engine", "serving.shadow"]]


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "store.py").write_text("from ..models import base\n")
    assert imported_modules(tmp_path / "features" / "store.py", "features") == [
        (1, "models"),
        (1, "models.base"),
    ]
