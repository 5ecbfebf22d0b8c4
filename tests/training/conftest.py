"""Fixtures the Spark modules share: both compare Spark (local mode, a standalone cluster) with this
process on the same synthetic events."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.generator import GeneratorConfig, generate


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 customers x 400 items, 60 days (written once per module that asks)."""
    folder = tmp_path_factory.mktemp("synthetic")
    generate(GeneratorConfig(customers=1_500, items=400, days=60, seed=11), folder)
    return folder
