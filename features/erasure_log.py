"""The erasure log: per erased id (a customer or one of their aliases), a salted hash (HMAC-SHA256
with a secret kept beside the log, never the id) and the time. Training, publishing, restores and
`omnirec forget --pending` read it to leave out what an erased id did up to its erasure, so a
customer who comes back later starts afresh (`features.erasure` does the erasing)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from features import arrowkit

SALT_FILE = "erasure.salt"
LOG_FILE = "erasures.log"
ID_COLUMNS = ("customer_id", "alias_id")  # the columns of a data file that name a person


@dataclass(frozen=True)
class ErasureLog:
    """The erasure log of a deployment (in its data folder, OMNIREC_DATA_DIR): salted hashes and
    times, one line each, appended and fsynced."""

    folder: Path

    def _salt(self) -> bytes:
        path = self.folder / SALT_FILE
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
        return path.read_text().strip().encode()

    def digest(self, ident: str) -> str:
        """The salted hash an id is logged under."""
        return hmac.new(self._salt(), ident.encode(), hashlib.sha256).hexdigest()

    def record(self, ids: Iterable[str], at: float | None = None) -> list[str]:
        """Log `ids` (a customer and their aliases) as erased at `at` (default now); returns their
        hashes."""
        stamp = time.time() if at is None else at
        digests = [self.digest(i) for i in ids]
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / LOG_FILE).open("a") as out:
            out.writelines(f"{stamp:.6f}\t{d}\n" for d in digests)
            out.flush()
            os.fsync(out.fileno())
        return digests

    def read(self) -> Erased:
        """The log as it stands: read once for a whole operation (a load, a restore, a sweep)."""
        path = self.folder / LOG_FILE
        found: dict[str, float] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                stamp, _, digest = line.partition("\t")
                if digest:
                    found[digest] = max(found.get(digest, 0.0), float(stamp))
        return Erased(self._salt() if found else b"", found)


@dataclass(frozen=True)
class Erased:
    """The erasure log read: hash -> the last time it was erased (falsy when nobody was)."""

    salt: bytes
    times: dict[str, float]

    def __bool__(self) -> bool:
        return bool(self.times)

    def until(self, ids: Sequence[str]) -> npt.NDArray[np.float64]:
        """Per id: when it was last erased (epoch seconds; -inf: never)."""
        out = np.full(len(ids), -np.inf)
        if self.times:
            for k, ident in enumerate(ids):
                digest = hmac.new(self.salt, ident.encode(), hashlib.sha256).hexdigest()
                out[k] = self.times.get(digest, -np.inf)
        return out


def without_erased(table: pa.Table, erased: Erased, *, timed: bool = True) -> pa.Table:
    """`table` less the rows of erased ids (each of ID_COLUMNS it has) stamped at or before the
    erasure (`timed`, with a `timestamp` column; otherwise every row of an erased id)."""
    if not erased or table.num_rows == 0:
        return table
    drop = np.zeros(table.num_rows, bool)
    stamps = None
    if timed and "timestamp" in table.column_names:
        micros = table.column("timestamp").cast(pa.int64()).to_numpy(zero_copy_only=False)
        stamps = np.asarray(micros, dtype=np.float64) / 1e6
    for name in ID_COLUMNS:
        if name not in table.column_names:
            continue
        column = arrowkit.as_dictionary(table.column(name).cast(pa.string()))
        values = [str(v) for v in column.dictionary.to_pylist()]
        until = np.append(erased.until(values), -np.inf)
        row_until = until[arrowkit.codes(column)]
        drop |= (stamps <= row_until) if stamps is not None else np.isfinite(row_until)
    return table.filter(pa.array(~drop)) if drop.any() else table
