"""The import graph follows the data: features -> models -> training -> serving, the CLI on top.

Training and serving both build on models and features; neither imports the other (the service
finds and loads a version through `models`, reads features through `features`).
`omnirec.settings`, `omnirec.errors` and `omnirec.redis_runtime` sit below every layer; the CLI
(`omnirec.cli`, `omnirec.commands`) sits above them all. Every import counts, including those
inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["omnirec", "features", "models", "training", "serving"]
MAY_IMPORT = {
    "omnirec": {"omnirec"},
    "features": {"omnirec", "features"},
    "models": {"omnirec", "features", "models"},
    "training": {"omnirec", "features", "models", "training"},
    "serving": {"omnirec", "features", "models", "serving"},
}
CLI_MODULES = ("omnirec.cli", "omnirec.commands")


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to, or None for outside code (numpy, tests, ...)."""
    if module == CLI_MODULES[0] or module.startswith(CLI_MODULES[1]):
        return "cli"
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
            # `from omnirec import commands` names a module too
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def violations(root: Path) -> list[str]:
    """Every import in the layered packages under `root` that runs against the flow."""
    wrong = []
    for top in LAYERS:
        for path in sorted((root / top).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            own = layer_of(module.removesuffix(".__init__"))
            package = module.rsplit(".", 1)[0]
            for line, target in imported_modules(path, package):
                theirs = layer_of(target)
                if own and own != "cli" and theirs and theirs not in MAY_IMPORT[own]:
                    wrong.append(
                        f"{path.relative_to(root)}:{line} ({own}) imports {target} ({theirs})"
                    )
    return sorted(set(wrong))


def test_imports_flow_with_the_data() -> None:
    assert violations(REPO) == []


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
            "from omnirec.commands import data",
            "training/pipeline.py:1 (training) imports omnirec.commands (cli)",
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
    (tmp_path / "omnirec" / "commands").mkdir()
    (tmp_path / "omnirec" / "commands" / "data.py").write_text(
        "from serving.app import create_app\n"
    )
    assert expected in violations(tmp_path)
    # the CLI on top may import every layer
    assert not [v for v in violations(tmp_path) if v.startswith("omnirec/commands")]


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "store.py").write_text("from ..models import base\n")
    assert imported_modules(tmp_path / "features" / "store.py", "features") == [
        (1, "models"),
        (1, "models.base"),
    ]
