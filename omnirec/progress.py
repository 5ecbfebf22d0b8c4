"""Progress of long steps: a tqdm bar (rate, ETA) when stderr is a terminal, and in logs (CI, a
service manager) a plain line every PLAIN_EVERY seconds and one at the end."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

PLAIN_EVERY = 10.0


class Progress:
    """Counts `total` units of work (`update(n)` as they are done; `close()` at the end)."""

    def __init__(
        self, total: int | None, desc: str, unit: str, stream: TextIO | None = None
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.done = 0
        self.started = self.last = time.monotonic()
        self.bar: tqdm | None = None  # type: ignore[type-arg]
        if self.stream.isatty():
            self.bar = tqdm(
                total=total,
                desc=desc,
                unit=f" {unit}",
                unit_scale=True,
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0.5,
            )

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= PLAIN_EVERY:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.desc}: {self.done:,}"
        if self.total:
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            share = self.done / self.total
            text += f"/{self.total:,} {self.unit} ({share:.0%}), {rate:,.0f}/s, ETA {left:,.0f} s"
        else:
            text += f" {self.unit}, {rate:,.0f}/s"
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.done:
            elapsed = time.monotonic() - self.started
            print(
                f"{self.desc}: {self.done:,} {self.unit} in {elapsed:,.1f} s "
                f"({self.done / max(elapsed, 1e-9):,.0f}/s)",
                file=self.stream,
                flush=True,
            )
