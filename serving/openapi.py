"""The OpenAPI document as strict as the structs that validate requests: Litestar leaves out two
things msgspec enforces, so a client generated from the document (or schemathesis) would send
what the server refuses. Filled in from the structs themselves (`msgspec.inspect`), once, when
the app is built:

- a struct that forbids unknown fields says `additionalProperties: false`;
- the items of a list of constrained strings (`item_ids`, `customer_ids`) carry their pattern
  and lengths."""

from __future__ import annotations

import inspect
from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPI, Schema

from serving import schemas


def response(data: Any, description: str) -> ResponseSpec:
    """A documented answer of a route without made-up examples: Litestar's default generates them
    with polyfactory and faker, which are imported for it (0.55 s of every service start) and
    fill the document with random values."""
    return ResponseSpec(data, description=description, generate_examples=False)


def _string(info: object) -> msgspec.inspect.StrType | None:
    if isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    return info if isinstance(info, msgspec.inspect.StrType) else None


def tighten(document: OpenAPI) -> None:
    """Add what the request structs enforce to their component schemas (in place)."""
    components = document.components.schemas if document.components else None
    if not components:
        return
    for name, struct in inspect.getmembers(schemas, inspect.isclass):
        component = components.get(name)
        if not isinstance(component, Schema) or not issubclass(struct, msgspec.Struct):
            continue
        info = msgspec.inspect.type_info(struct)
        assert isinstance(info, msgspec.inspect.StructType)
        if info.forbid_unknown_fields:
            component.additional_properties = False
        for field in info.fields:
            kind = (
                field.type.type if isinstance(field.type, msgspec.inspect.Metadata) else field.type
            )
            if not isinstance(kind, msgspec.inspect.ListType):
                continue
            item = _string(kind.item_type)
            prop = (component.properties or {}).get(field.encode_name)
            if item is None or not isinstance(prop, Schema) or not isinstance(prop.items, Schema):
                continue
            prop.items.pattern = item.pattern or prop.items.pattern
            prop.items.min_length = item.min_length or prop.items.min_length
            prop.items.max_length = item.max_length or prop.items.max_length
