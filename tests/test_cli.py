"""The command line: the names its parser offers are the registries' own, and `--help` imports
no layer below the CLI."""

from __future__ import annotations

import subprocess
import sys

from cli.names import IMPORT_FORMATS, MODEL_NAMES
from features.importers import IMPORTERS
from models import MODEL_KINDS
from tests.waiting import PATIENCE

HEAVY = ("numpy", "pyarrow", "redis", "models", "features", "training", "serving", "mlflow")


def test_the_parser_offers_the_registries_names() -> None:
    assert set(MODEL_NAMES) == set(MODEL_KINDS)
    assert set(IMPORT_FORMATS) == set(IMPORTERS)


def test_help_imports_nothing_heavy() -> None:
    script = (
        "import contextlib, io, sys\n"
        "from cli.main import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=PATIENCE, check=True
    )
    assert run.stdout.strip() == "[]"
