"""The OpenAPI document says what the request structs enforce (built in process: no server)."""

from __future__ import annotations

from pathlib import Path

from features.schema import ID_PATTERN
from omnirec.settings import Settings
from serving.app import create_app


def test_the_document_is_as_strict_as_the_structs(tmp_path: Path) -> None:
    app = create_app(Settings.from_env({"OMNIREC_DATA_DIR": str(tmp_path)}))
    components = app.openapi_schema.to_schema()["components"]["schemas"]
    assert components["StockUpdateIn"]["additionalProperties"] is False  # unknown fields: 400
    for struct, field in (("OrderRequest", "item_ids"), ("BatchRequest", "customer_ids")):
        assert components[struct]["properties"][field]["items"]["pattern"] == ID_PATTERN
