"""Parameters and helpers shared by the controllers."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from litestar.datastructures import State
from litestar.params import Parameter

from features.schema import ID_PATTERN, KNOWN_CHANNELS
from omnirec.errors import InvalidRequestError
from serving.engine import Engine

Limit = Annotated[int, Parameter(ge=1, le=100, description="how many items (1-100)")]
StoreId = Annotated[
    str | None,
    Parameter(pattern=ID_PATTERN, max_length=128, description="only items in stock at this store"),
]
Channel = Annotated[
    str | None,
    Parameter(max_length=32, description="web, app, store or another channel the data knows"),
]
Category = Annotated[
    str | None, Parameter(max_length=128, description="only items of this category")
]
PathId = Annotated[
    str, Parameter(pattern=ID_PATTERN, max_length=128, description="customer id or any alias id")
]
ItemId = Annotated[str, Parameter(pattern=ID_PATTERN, max_length=128, description="item id")]
_ID = re.compile(ID_PATTERN)


def get_engine(state: State) -> Engine:
    engine: Engine = state.engine
    return engine


def request_id() -> str:
    return uuid.uuid4().hex


def check_channel(engine: Engine, channel: str | None) -> str | None:
    """Channels the data knows (plus web, app, store); anything else is a 400 naming `channel`."""
    if channel is None:
        return None
    known = set(KNOWN_CHANNELS) | set(engine.snapshot.channels if engine.snapshot else [])
    if channel not in known:
        raise InvalidRequestError(
            "channel", f"unknown channel {channel!r}; known: {', '.join(sorted(known))}"
        )
    return channel


def check_ids(field: str, values: list[str]) -> None:
    for i, value in enumerate(values):
        if not _ID.match(value):
            raise InvalidRequestError(f"{field}[{i}]", "invalid characters or longer than 128")
