"""The documentation cannot drift from the code: every environment variable the code reads is in
docs/configuration.md and every one documented there is read; the README stays a newcomer's
page and names documents that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("omnirec", "features", "models", "training", "serving", "cli")
VARIABLE = re.compile(r"\b((?:OMNIREC|MLFLOW|REDIS)_[A-Z0-9_]+)\b")
# set for the libraries' sake, not a setting of ours
NOT_SETTINGS = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"}


def read_by_code() -> set[str]:
    found: set[str] = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            found |= set(re.findall(r'"((?:OMNIREC|MLFLOW|REDIS)_[A-Z0-9_]+)"', path.read_text()))
    return found - NOT_SETTINGS


def documented() -> set[str]:
    table = [
        line
        for line in (REPO / "docs" / "configuration.md").read_text().splitlines()
        if line.startswith("| `")
    ]
    return {name for line in table for name in VARIABLE.findall(line.split("|")[1])}


def test_every_variable_the_code_reads_is_documented() -> None:
    assert read_by_code() - documented() == set()


def test_every_documented_variable_is_read_by_the_code() -> None:
    assert documented() - read_by_code() == set()


def test_the_readme_is_short_and_names_documents_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    named = set(re.findall(r"`(docs/[a-z_-]+\.md)`", readme))
    assert named, "the README points to the documents"
    assert {name for name in named if not (REPO / name).exists()} == set()
    assert {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")} <= named
