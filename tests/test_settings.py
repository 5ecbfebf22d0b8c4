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


def test_a_tenant_has_its_own_folder_prefix_model_rules_and_experiments(tmp_path: Path) -> None:
    env = {
        "OMNIREC_DATA_DIR": str(tmp_path),
        "OMNIREC_TENANTS": "north,south",
        "OMNIREC_API_KEYS": "north-key-0123456789:recommend@north;south-key-0123456789:admin@south",
    }
    settings = Settings.from_env(env)
    assert settings.serving.key_tenants == {
        "north-key-0123456789": "north",
        "south-key-0123456789": "south",
    }
    (tmp_path / "tenants" / "north").mkdir(parents=True)
    (tmp_path / "tenants" / "north" / "placements.toml").write_text("")
    north, south = settings.for_tenant("north"), settings.for_tenant("south")
    assert north.data_dir == tmp_path / "tenants" / "north"
    assert (north.redis.prefix, south.redis.prefix) == ("omnirec-north", "omnirec-south")
    assert (north.mlflow.model_name, north.mlflow.experiment) == ("omnirec-north", "omnirec-north")
    assert north.mlflow.tracking_uri == settings.mlflow.tracking_uri  # one MLflow store
    assert north.redis.embedded_dir == tmp_path  # one embedded Redis
    assert north.serving.placements_file == tmp_path / "tenants" / "north" / "placements.toml"
    assert south.serving.placements_file is None and south.serving.experiments_file is None
    with pytest.raises(ConfigError, match="unknown tenant 'west'"):
        settings.for_tenant("west")
    with pytest.raises(ConfigError, match="every key ends in @<tenant>"):
        Settings.from_env({**env, "OMNIREC_API_KEYS": "plain-key-0123456789:recommend"})
    with pytest.raises(ConfigError, match="OMNIREC_TENANTS is unset"):
        Settings.from_env({"OMNIREC_API_KEYS": "plain-key-0123456789:recommend@north"})
    with pytest.raises(ConfigError, match="not a tenant name"):
        Settings.from_env({"OMNIREC_TENANTS": "North"})
