"""Settings: one frozen object, read once from OMNIREC_* (plus REDIS_URL, MLFLOW_TRACKING_URI)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import msgspec

from omnirec.errors import ConfigError

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "favorite": 2.0,
    "add_to_cart": 3.0,
    "remove_from_cart": 0.0,
    "purchase": 6.0,
    "return": 0.0,
}
DEFAULT_CHANNEL_WEIGHTS: dict[str, float] = {"web": 1.0, "app": 1.0, "store": 1.25}
# `public`: the storefront widget's key, in every visitor's page: recommendations, impressions and
# clicks only (serving.auth, serving.routes.feedback)
SCOPES = frozenset({"recommend", "events", "admin", "tablet", "stock", "privacy", "public"})
APPENDFSYNC = ("always", "everysec")


class InteractionSettings(msgspec.Struct, frozen=True):
    """How events become interaction strengths."""

    event_weights: dict[str, float] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS)
    )
    channel_weights: dict[str, float] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_CHANNEL_WEIGHTS)
    )
    decay_half_life_days: float = 0.0  # 0 turns time decay off
    max_quantity: int = 10  # linear scaling: a bulk order counts at most this many units
    quantity_scaling: str = "log"  # "log": 1 + log(units); "linear": units up to max_quantity
    # decay is measured from each customer's own last event ("customer") or the data's ("global")
    decay_reference: str = "customer"


class RedisSettings(msgspec.Struct, frozen=True):
    """Where the feature store lives."""

    url: str | None = None  # None: start the embedded redis-server
    prefix: str = "omnirec"
    snapshot_grace_seconds: int = 3600
    activity_ttl_seconds: int = 90 * 86400
    # events a stream may hold before an export: past it new events are refused (503), never
    # an acknowledged one trimmed
    backlog_limit: int = 10_000_000
    socket_timeout_seconds: float = 0.5
    appendfsync: str = "always"  # embedded Redis: fsync the append-only file before each reply
    cluster: bool = False  # REDIS_URL names a node of a Redis Cluster
    sentinel_master: str | None = None  # REDIS_URL names Sentinels; this is the master's name
    ca_file: str | None = None  # rediss://: the CA that signed the server's certificate
    cert_file: str | None = None  # rediss://: a client certificate, when the server asks for one
    key_file: str | None = None
    event_streams: int = 8  # events are spread over this many streams (slots, on a cluster)
    embedded_dir: Path | None = None  # the embedded server's folder (default: the data folder's)


class MlflowSettings(msgspec.Struct, frozen=True):
    """Where runs and model versions are recorded."""

    tracking_uri: str
    registry_uri: str | None = None
    experiment: str = "omnirec"
    model_name: str = "omnirec"
    gate_metric: str = "ndcg_at_10"


class ServingSettings(msgspec.Struct, frozen=True):
    """The HTTP service."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    api_keys: dict[str, frozenset[str]] = msgspec.field(default_factory=dict)
    key_tenants: dict[str, str] = msgspec.field(default_factory=dict)  # key -> its tenant
    tenants: tuple[str, ...] = ()  # the retailers or brands one deployment serves (none: one)
    reload_interval_seconds: float = 30.0
    max_body_bytes: int = 2_000_000
    max_batch_customers: int = 1000
    candidates_per_customer: int = 200
    repurchase_days: dict[str, float] = msgspec.field(default_factory=dict)  # category -> days
    fast_paths: bool = True  # serving.fastpath: plain-ASGI answers for well-formed hot requests
    log_format: str = "text"  # or "json": one JSON object per line
    request_read_seconds: float = 10.0  # a request not fully received by then: connection closed
    heavy_process: bool = True  # batch route and bulk events computed in a child process
    trending_refresh_seconds: float = 60.0  # how long a worker keeps the trending lists it read
    trending_min_customers: int = 3  # different customers an item needs to trend
    placements_file: Path | None = None  # rule sets and placements (serving.placements)
    experiments_file: Path | None = None  # A/B experiments (serving.experiments.config)
    attribution_hours: float = 24.0  # a purchase this long after a click counts for its variant
    # the attribution report: a purchase this long after an impression counts for it (view-through)
    view_attribution_hours: float = 72.0
    # origins whose pages may call the API from the browser (the widget): CORS allow-list
    cors_origins: tuple[str, ...] = ()
    # tracking links in e-mails: where the service is reached from outside, the key that signs
    # them (default: one kept in the data folder), and the item page when the catalogue has no url
    public_url: str | None = None
    link_secret: str | None = None
    item_url_template: str | None = None  # e.g. https://shop.example/p/{item_id}
    shadow_delay_seconds: float = (
        0.0  # fault injection (tests): each shadow answer takes this longer
    )


class Settings(msgspec.Struct, frozen=True):
    """All of omnirec's configuration; build it with `Settings.from_env()`."""

    data_dir: Path
    redis: RedisSettings
    mlflow: MlflowSettings
    serving: ServingSettings
    interactions: InteractionSettings
    seed: int = 42
    max_future_seconds: float = 86_400.0  # events stamped further ahead of now are refused
    tenant: str | None = None  # whose settings these are (`for_tenant`); None: the deployment's

    def for_tenant(self, name: str) -> Settings:
        """One tenant's settings: its own data folder (`<data>/tenants/<name>`: events, erasure
        log, link key, `placements.toml` and `experiments.toml`), Redis prefix (`<prefix>-<name>`)
        and MLflow model and experiment names (`<name>-<tenant>`); the Redis server and the MLflow
        store are the deployment's."""
        if name not in self.serving.tenants:
            known = ", ".join(self.serving.tenants) or "none configured (OMNIREC_TENANTS)"
            raise ConfigError(f"unknown tenant {name!r}; tenants: {known}")
        folder = self.data_dir / "tenants" / name

        def own(file: str) -> Path | None:
            return folder / file if (folder / file).exists() else None

        return msgspec.structs.replace(
            self,
            tenant=name,
            data_dir=folder,
            redis=msgspec.structs.replace(
                self.redis,
                prefix=f"{self.redis.prefix}-{name}",
                embedded_dir=self.redis.embedded_dir or self.data_dir,
            ),
            mlflow=msgspec.structs.replace(
                self.mlflow,
                model_name=f"{self.mlflow.model_name}-{name}",
                experiment=f"{self.mlflow.experiment}-{name}",
            ),
            serving=msgspec.structs.replace(
                self.serving,
                placements_file=own("placements.toml"),
                experiments_file=own("experiments.toml"),
            ),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from `environ` (default: the process environment)."""
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("OMNIREC_DATA_DIR", "var")).resolve()
        tracking = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir / 'mlflow.db'}"
        return cls(
            data_dir=data_dir,
            redis=RedisSettings(
                url=env.get("REDIS_URL") or None,
                prefix=env.get("OMNIREC_REDIS_PREFIX", "omnirec"),
                snapshot_grace_seconds=_int(env, "OMNIREC_SNAPSHOT_GRACE_SECONDS", 3600),
                appendfsync=_choice(env, "OMNIREC_REDIS_APPENDFSYNC", APPENDFSYNC, "always"),
                cluster=_flag(env, "OMNIREC_REDIS_CLUSTER"),
                sentinel_master=env.get("OMNIREC_REDIS_SENTINEL_MASTER") or None,
                ca_file=_file(env, "OMNIREC_REDIS_CA_FILE"),
                cert_file=_file(env, "OMNIREC_REDIS_CERT_FILE"),
                key_file=_file(env, "OMNIREC_REDIS_KEY_FILE"),
                backlog_limit=_bounded(
                    _int(env, "OMNIREC_EVENT_BACKLOG_LIMIT", 10_000_000),
                    "OMNIREC_EVENT_BACKLOG_LIMIT",
                    1,
                    1_000_000_000,
                ),
                event_streams=_bounded(
                    _int(env, "OMNIREC_EVENT_STREAMS", 8), "OMNIREC_EVENT_STREAMS", 1, 1024
                ),
            ),
            mlflow=MlflowSettings(
                tracking_uri=tracking,
                registry_uri=env.get("MLFLOW_REGISTRY_URI") or None,
                experiment=env.get("OMNIREC_EXPERIMENT", "omnirec"),
                model_name=env.get("OMNIREC_MODEL_NAME", "omnirec"),
                gate_metric=env.get("OMNIREC_GATE_METRIC", "ndcg_at_10"),
            ),
            serving=ServingSettings(
                host=env.get("OMNIREC_HOST", "127.0.0.1"),
                port=_int(env, "OMNIREC_PORT", 8000),
                workers=_int(env, "OMNIREC_WORKERS", 1),
                api_keys=parse_api_keys(env.get("OMNIREC_API_KEYS", "")),
                key_tenants=parse_key_tenants(
                    env.get("OMNIREC_API_KEYS", ""), parse_tenants(env.get("OMNIREC_TENANTS", ""))
                ),
                tenants=parse_tenants(env.get("OMNIREC_TENANTS", "")),
                reload_interval_seconds=float(env.get("OMNIREC_RELOAD_INTERVAL_SECONDS", "30")),
                repurchase_days=parse_weights(env.get("OMNIREC_REPURCHASE_DAYS", ""), {}),
                fast_paths=env.get("OMNIREC_FAST_PATHS", "1") not in {"0", "false", "no", "off"},
                log_format=_choice(env, "OMNIREC_LOG_FORMAT", ("text", "json"), "text"),
                request_read_seconds=float(env.get("OMNIREC_REQUEST_READ_SECONDS") or 10),
                heavy_process=_flag(env, "OMNIREC_HEAVY_PROCESS", True),
                trending_refresh_seconds=float(env.get("OMNIREC_TRENDING_REFRESH_SECONDS") or 60),
                trending_min_customers=_int(env, "OMNIREC_TRENDING_MIN_CUSTOMERS", 3),
                placements_file=_path(env, "OMNIREC_PLACEMENTS_FILE"),
                experiments_file=_path(env, "OMNIREC_EXPERIMENTS_FILE"),
                attribution_hours=float(env.get("OMNIREC_ATTRIBUTION_HOURS") or 24),
                view_attribution_hours=float(env.get("OMNIREC_VIEW_ATTRIBUTION_HOURS") or 72),
                cors_origins=parse_origins(env.get("OMNIREC_CORS_ORIGINS", "")),
                public_url=(env.get("OMNIREC_PUBLIC_URL") or "").rstrip("/") or None,
                link_secret=env.get("OMNIREC_LINK_SECRET") or None,
                item_url_template=env.get("OMNIREC_ITEM_URL_TEMPLATE") or None,
                shadow_delay_seconds=float(env.get("OMNIREC_SHADOW_DELAY_SECONDS") or 0),
            ),
            interactions=InteractionSettings(
                event_weights=parse_weights(
                    env.get("OMNIREC_EVENT_WEIGHTS", ""), DEFAULT_EVENT_WEIGHTS
                ),
                channel_weights=parse_weights(
                    env.get("OMNIREC_CHANNEL_WEIGHTS", ""), DEFAULT_CHANNEL_WEIGHTS
                ),
                decay_half_life_days=float(env.get("OMNIREC_DECAY_HALF_LIFE_DAYS", "0")),
                quantity_scaling=_choice(env, "OMNIREC_QUANTITY_SCALING", ("log", "linear"), "log"),
                decay_reference=_choice(
                    env, "OMNIREC_DECAY_REFERENCE", ("customer", "global"), "customer"
                ),
            ),
            seed=_int(env, "OMNIREC_SEED", 42),
            max_future_seconds=float(env.get("OMNIREC_MAX_FUTURE_SECONDS") or 86_400),
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _bounded(value: int, name: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = (env.get(name) or str(default)).strip().lower()
    if raw not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return raw in {"1", "true", "yes", "on"}


def _file(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name) or None
    if raw is not None and not Path(raw).is_file():
        raise ConfigError(f"{name}: no such file {raw!r}")
    return raw


def _path(env: Mapping[str, str], name: str) -> Path | None:
    found = _file(env, name)
    return None if found is None else Path(found).resolve()


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = (env.get(name) or default).strip().lower()
    if raw not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def parse_weights(raw: str, defaults: Mapping[str, float]) -> dict[str, float]:
    """Parse `view=1,purchase=6` over the defaults; returns the merged mapping."""
    weights = dict(defaults)
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"weight {part!r} must look like name=number")
        try:
            weights[name.strip()] = float(value)
        except ValueError as exc:
            raise ConfigError(f"weight for {name!r} is not a number: {value!r}") from exc
    return weights


def parse_origins(raw: str) -> tuple[str, ...]:
    """Parse `https://shop.example,https://www.shop.example` (scheme, host, optional port)."""
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?", origin):
            raise ConfigError(
                f"OMNIREC_CORS_ORIGINS: {origin!r} is not an origin (https://host[:port])"
            )
    return origins


TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9\-]{0,31}")


def parse_tenants(raw: str) -> tuple[str, ...]:
    """Parse `brand-a,brand-b` (lowercase names, digits and dashes)."""
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    for name in names:
        if not TENANT_NAME.fullmatch(name):
            raise ConfigError(f"OMNIREC_TENANTS: {name!r} is not a tenant name (a-z, 0-9, -)")
    if len(set(names)) != len(names):
        raise ConfigError("OMNIREC_TENANTS: a tenant is named twice")
    return names


def parse_key_tenants(raw: str, tenants: tuple[str, ...]) -> dict[str, str]:
    """{key: tenant} of `key:scope+scope@tenant` entries. With tenants configured, every key
    names one of them (a key reaches its own tenant's data only); without, none may."""
    owners: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in raw.split(";"))):
        key, _, rest = entry.partition(":")
        _, at, tenant = rest.partition("@")
        if not tenants and at:
            raise ConfigError("OMNIREC_API_KEYS: a key names a tenant but OMNIREC_TENANTS is unset")
        if tenants and tenant.strip() not in tenants:
            raise ConfigError(
                "OMNIREC_API_KEYS: with OMNIREC_TENANTS set, every key ends in @<tenant>, "
                f"one of {', '.join(tenants)}"
            )
        if at:
            owners[key.strip()] = tenant.strip()
    return owners


def parse_api_keys(raw: str) -> dict[str, frozenset[str]]:
    """Parse `key1:recommend+events;key2:admin@brand-a` into {key: scopes} (the tenant after
    `@` is `parse_key_tenants`')."""
    keys: dict[str, frozenset[str]] = {}
    for entry in filter(None, (e.strip() for e in raw.split(";"))):
        key, sep, scopes_raw = entry.partition(":")
        scopes_raw = scopes_raw.partition("@")[0]
        scopes = frozenset(s.strip() for s in scopes_raw.split("+") if s.strip())
        if not sep or not key or not scopes:
            raise ConfigError("OMNIREC_API_KEYS entries must look like key:scope+scope")
        unknown = scopes - SCOPES
        if unknown:
            raise ConfigError(f"OMNIREC_API_KEYS: unknown scope(s) {sorted(unknown)}")
        if len(key) < 16:
            raise ConfigError("OMNIREC_API_KEYS: every key must be at least 16 characters")
        keys[key] = scopes
    return keys
