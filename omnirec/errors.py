"""The one exception tree of omnirec; serving maps it to HTTP in a single place.

OmnirecError
├── ConfigError             bad settings or command-line options
├── DataError               an input file cannot be used at all (names the file and why)
├── ModelError              a model cannot be built, saved or loaded
│   ├── ModelFormatError    a stored model has wrong shapes, NaNs or a foreign format
│   └── ModelTooLargeError  the model does not fit this catalogue (EASE's item x item matrix)
├── RegistryError           MLflow registry: no such version, no champion, ...
├── FeatureStoreError       the feature store refused an operation
│   └── StoreUnavailableError  Redis cannot be reached (callers fall back)
│       └── RedisConfigError   Redis refuses the settings: password, certificate (names REDIS_URL)
├── NotFoundError           an unknown customer, item or store where one is required
└── InvalidRequestError     a request parameter is out of range or malformed (names it)
"""

from __future__ import annotations


class OmnirecError(Exception):
    """Base of every error omnirec raises on purpose."""


class ConfigError(OmnirecError):
    """A setting or command-line option is invalid."""


class DataError(OmnirecError):
    """An input file cannot be used at all."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ModelError(OmnirecError):
    """A model cannot be built, saved or loaded."""


class ModelFormatError(ModelError):
    """A stored model is malformed (shapes, NaNs, unknown format)."""


class ModelTooLargeError(ModelError):
    """The model cannot be built for a catalogue this size."""


class RegistryError(OmnirecError):
    """The MLflow registry refused or lacks what was asked for."""


class FeatureStoreError(OmnirecError):
    """The feature store refused an operation."""


class StoreUnavailableError(FeatureStoreError):
    """The feature store (Redis) cannot be reached."""


class EventBacklogFullError(StoreUnavailableError):
    """The event streams hold as many events as they may before an export: new ones are refused
    (nothing acknowledged is ever trimmed); retry after the next export."""

    def __init__(self, waiting: int) -> None:
        super().__init__(f"{waiting:,} events wait for export")
        self.waiting = waiting

    def __reduce__(self) -> tuple[type[EventBacklogFullError], tuple[int]]:
        return (EventBacklogFullError, (self.waiting,))  # crosses from the heavy-request process


class RedisConfigError(StoreUnavailableError):
    """Redis refuses the settings (the password, the user, a certificate): a retry cannot help.
    Serving treats it as Redis unavailable (degraded answers); commands stop and name REDIS_URL."""


class NotFoundError(OmnirecError):
    """An entity that the operation requires does not exist."""


class InvalidRequestError(OmnirecError):
    """A request parameter is invalid; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
