"""`omnirec demo`: synthetic data -> train + register -> publish -> serve, printing a call per
caller."""

from __future__ import annotations

import argparse
import os
import secrets

from cli.options import CommandSpec, positive_int
from omnirec.settings import Settings


def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--customers", type=positive_int, default=5_000, help="synthetic customers")
    p.add_argument("--items", type=positive_int, default=2_000, help="catalogue size")
    p.add_argument("--port", type=int, default=8000, help="port of the demo service")
    p.add_argument(
        "--no-serve", action="store_true", help="stop after publishing (do not start the service)"
    )


def _run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from features.generator import GeneratorConfig, generate
    from omnirec.redis_runtime import redis_target
    from training.pipeline import TrainConfig, train
    from training.report import markdown_table
    from training.versions import publish_version

    data = settings.data_dir / "synthetic"
    print(
        f"1/4 generating {args.customers:,} customers x {args.items:,} items of omnichannel events "
        f"into {data}"
    )
    generated = generate(
        GeneratorConfig(customers=args.customers, items=args.items, days=90, seed=settings.seed),
        data,
    )
    print(
        f"    {generated.events:,} events, {generated.aliases:,} aliases, {generated.stores} stores"
    )
    keys = {
        "recommend": "demo-storefront-" + secrets.token_hex(8),
        "events": "demo-events-" + secrets.token_hex(8),
        "tablet": "demo-tablet-" + secrets.token_hex(8),
        "admin": "demo-admin-" + secrets.token_hex(8),
    }
    os.environ["OMNIREC_API_KEYS"] = ";".join(f"{k}:{scope}" for scope, k in keys.items())
    os.environ.setdefault("OMNIREC_RELOAD_INTERVAL_SECONDS", "5")
    settings = Settings.from_env()
    # the demo holds the data folder's Redis (REDIS_URL, or the shared embedded server) throughout:
    # train, publish and the service below, and any omnirec command run beside it, use the same one
    with redis_target(settings):
        print(
            "2/4 training ALS, evaluating in time order against popularity, registering in MLflow"
        )
        result = train(TrainConfig(data=data, model="als"), settings)
        print(markdown_table({"als": result.metrics, "popularity": result.baseline}, 10))
        print(f"    {result.gate}")
        print("3/4 publishing features to Redis")
        print("    " + str(publish_version(settings, result.version or 1)))
        customer = "C00000001"
        base = f"http://127.0.0.1:{args.port}"
        if args.no_serve:
            print("4/4 not serving (--no-serve): the data, model and features are in place")
            return 0
        print(f"4/4 serving on {base} (OpenAPI: {base}/schema/swagger, tablet page: {base}/tablet)")
        print(f"""
Try these (keys are for this demo run only):
  storefront:  curl -s -H 'X-API-Key: {keys["recommend"]}' '{base}/v1/customers/{customer}/recommendations?limit=5&channel=web&explain=true'
  similar:     curl -s -H 'X-API-Key: {keys["recommend"]}' '{base}/v1/items/I000010/similar?limit=5'
  e-mail:      curl -s -H 'X-API-Key: {keys["recommend"]}' -H 'Content-Type: application/json' -d '{{"customer_id":"{customer}","item_ids":["I000010"],"limit":5}}' {base}/v1/orders/complements
  batch:       curl -s -H 'X-API-Key: {keys["recommend"]}' -H 'Content-Type: application/json' -d '{{"customer_ids":["{customer}","C00000002"],"limit":3}}' {base}/v1/recommendations/batch
  event:       curl -s -H 'X-API-Key: {keys["events"]}' -H 'Content-Type: application/json' -d '{{"customer_id":"{customer}","item_id":"I000020","event_type":"view","channel":"web"}}' {base}/v1/events
  feedback:    curl -s -H 'X-API-Key: {keys["events"]}' -H 'Content-Type: application/json' -d '{{"feedback":[{{"type":"click","customer_id":"{customer}","item_id":"I000020","position":1}}]}}' {base}/v1/feedback   (add the answer's "recommendation_id")
  placement:   curl -s -H 'X-API-Key: {keys["recommend"]}' '{base}/v1/customers/{customer}/recommendations?placement=home&limit=5'   (rules: OMNIREC_PLACEMENTS_FILE; A/B tests: OMNIREC_EXPERIMENTS_FILE)
  tablet:      open {base}/tablet and enter the key {keys["tablet"]}, then look up customer id {customer}
  readiness:   curl -s {base}/health/ready ;  metrics: curl -s {base}/metrics
""")  # noqa: E501  (whole commands, to copy and paste)
        import uvicorn

        from serving.app import create_app
        from serving.http_protocol import DeadlineHttpToolsProtocol

        uvicorn.run(
            create_app(settings),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            access_log=False,
            http=DeadlineHttpToolsProtocol,
        )
    return 0


COMMANDS = [
    CommandSpec(
        "demo",
        "generate data, train, register, publish and serve, printing example calls",
        _configure_demo,
        _run_demo,
    ),
]
