"""What storefronts and e-mails load without an integration: the widget script (`/widget.js`)
and the tracking links of e-mails (`/v1/r/<token>`), both public."""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.response import Redirect

from features.feedback import parse_recommendation_id
from omnirec.errors import EventBacklogFullError, StoreUnavailableError
from serving.links import item_page, named_tenant
from serving.metrics import LINK_CLICKS
from serving.openapi import response
from serving.routes.feedback import count_feedback
from serving.schemas import ErrorBody
from serving.tenants import Tenants

STATIC = Path(__file__).resolve().parents[1] / "static"
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@get("/widget.js", include_in_schema=False, sync_to_thread=False)
def widget_script() -> Response[bytes]:
    """The storefront widget: `<omnirec-recommendations>` and its forms (see docs/widget.md)."""
    return Response(
        (STATIC / "widget.js").read_bytes(),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@get(
    "/v1/r/{token:str}",
    operation_id="trackingLink",
    tags=["feedback"],
    summary="A tracking link from an e-mail: records the click, then sends the reader to the item",
    status_code=302,
    responses={
        404: response(
            ErrorBody, description="not a link this service signed, or an item without a page"
        )
    },
)
async def tracking_link(token: str, state: State) -> Redirect:
    """302 to the item's page (the catalogue's `url`, else OMNIREC_ITEM_URL_TEMPLATE) once the
    click is stored with its recommendation id; when Redis cannot store it the reader is sent on
    all the same (counted as `not_recorded`). 404 for a link this service did not sign."""
    tenants: Tenants = state.tenants
    engine = tenants.get(named_tenant(token)).engine  # whose key then checks the signature
    click = engine.links.read(token) if len(token) <= 2048 else None
    ref = parse_recommendation_id(click.recommendation_id) if click else None
    if click is None or ref is None:
        LINK_CLICKS.labels("invalid").inc()
        raise NotFoundException("not a tracking link of this service")
    snap = engine.live.snapshot
    col = snap.item_index.get(click.item_id) if snap is not None else None
    catalogue_url = (
        snap.url_list[col] if snap is not None and col is not None and snap.url_list else None
    )
    target = item_page(engine.settings.serving.item_url_template, catalogue_url, click.item_id)
    record: dict[str, object] = {
        "type": "click",
        "customer_id": click.customer_id,
        "item_id": click.item_id,
        "recommendation_id": click.recommendation_id,
        "channel": ref.channel or "email",
    }
    outcome = "not_recorded"
    feedback = engine.live.feedback
    if feedback is not None and not engine.live.breaker.open:
        try:
            result = await feedback.store(engine.live.pipeline.checked, [record])
            count_feedback(engine, result)
            outcome = "recorded" if result.accepted else "rejected"
        except EventBacklogFullError:
            pass
        except StoreUnavailableError:
            engine.live.breaker.trip()
    LINK_CLICKS.labels(outcome).inc()
    if target is None:
        raise NotFoundException(
            "this item has no page: the catalogue has no url and OMNIREC_ITEM_URL_TEMPLATE is unset"
        )
    return Redirect(target, status_code=302, headers=NO_STORE)
