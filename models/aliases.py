"""A customer's other ids (loyalty card, account, device, hashed e-mail) kept beside a saved model,
so that the MLflow pyfunc answers an alias as the route does: as the customer it belongs to."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from omnirec.errors import ModelFormatError

ALIASES_FILE = "aliases.npz"


def save_aliases(
    alias_ids: npt.NDArray[np.str_] | list[str],
    customer_ids: npt.NDArray[np.str_] | list[str],
    folder: Path,
) -> Path:
    """Write alias -> customer (string arrays, no pickle) into a saved model's folder."""
    path = folder / ALIASES_FILE
    np.savez(
        path,
        alias_ids=np.asarray(alias_ids, dtype=str),
        customer_ids=np.asarray(customer_ids, dtype=str),
    )
    return path


def load_aliases(folder: Path) -> dict[str, str]:
    """alias -> customer saved with a model (empty for models saved without)."""
    path = folder / ALIASES_FILE
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            aliases, owners = npz["alias_ids"], npz["customer_ids"]
    except (ValueError, KeyError) as exc:
        raise ModelFormatError(f"{path}: refused ({exc})") from exc
    if aliases.shape != owners.shape:
        raise ModelFormatError(f"{path}: {aliases.shape} aliases for {owners.shape} customers")
    return dict(zip(aliases.tolist(), owners.tolist(), strict=True))


def resolve(ids: Sequence[str], aliases: dict[str, str]) -> list[str]:
    """Each id as the customer it names: the owner of an alias, else the id itself (the route's
    rule: an alias key, when there is one, wins)."""
    return [aliases.get(i, i) for i in ids]
