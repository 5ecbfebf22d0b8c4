"""Progress of long steps: plain periodic lines with rate and ETA when not on a terminal."""

from __future__ import annotations

import io

import pytest

from omnirec import progress as progress_module
from omnirec.progress import Progress


def test_plain_lines_in_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "PLAIN_EVERY", 0.0)
    out = io.StringIO()  # not a terminal: no bar
    bar = Progress(1_000, "publish", "customers", stream=out)
    bar.update(250)
    bar.update(750)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("publish: 250/1,000 customers (25%), ") and "ETA" in lines[0]
    assert lines[-1].startswith("publish: 1,000 customers in ") and lines[-1].endswith("/s)")


def test_quiet_between_intervals_and_without_a_total() -> None:
    out = io.StringIO()
    bar = Progress(None, "export", "events", stream=out)
    bar.update(5)  # within the first PLAIN_EVERY seconds: nothing yet
    assert out.getvalue() == ""
    bar.close()
    assert out.getvalue().startswith("export: 5 events in ")
