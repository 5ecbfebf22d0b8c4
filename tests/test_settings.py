"""Settings come from the environment once, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnirec.errors import ConfigError
from omnirec.settings import Settings


def test_defaults_use_embedded_services(tmp_path: Path) -> None:
    settings = Settings.from_env({"OMNIREC_DATA_DIR": str(tmp_path)})
    assert settings.redis.url is None
    assert settings.mlflow.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert (
        settings.interactions.event_weights["purchase"]
        > settings.interactions.event_weights["view"]
    )
    assert (
        settings.interactions.channel_weights["store"]
        >= settings.interactions.channel_weights["web"]
    )


def test_overrides_keys_and_weights() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://example:6380/2",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
            "OMNIREC_API_KEYS": "tablet-key-0123456789:tablet+recommend;admin-key-0123456789:admin",
            "OMNIREC_EVENT_WEIGHTS": "view=0.5, purchase=10",
            "OMNIREC_DECAY_HALF_LIFE_DAYS": "30",
        }
    )
    assert settings.redis.url == "redis://example:6380/2"
    assert settings.serving.api_keys["tablet-key-0123456789"] == frozenset({"tablet", "recommend"})
    assert settings.interactions.event_weights["view"] == 0.5
    assert settings.interactions.event_weights["add_to_cart"] == 3.0  # default kept
    assert settings.interactions.decay_half_life_days == 30


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OMNIREC_API_KEYS": "short:admin"}, "at least 16"),
        ({"OMNIREC_API_KEYS": "key-0123456789abcdef:root"}, "unknown scope"),
        ({"OMNIREC_EVENT_WEIGHTS": "view"}, "name=number"),
        ({"OMNIREC_PORT": "eighty"}, "OMNIREC_PORT must be an integer"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
