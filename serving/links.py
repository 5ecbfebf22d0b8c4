"""Tracking links for e-mails: `<public url>/v1/r/<token>` records the click with its
recommendation id and sends the reader on to the item's page.

The token carries the recommendation id, the customer and the item, signed (HMAC-SHA256, 96
bits): nobody can forge a click or send a reader elsewhere through the service (the target is the
catalogue's page of that item, never a URL from the link). It is encoded, not encrypted; the
service logs no request paths. The signing key is `OMNIREC_LINK_SECRET`, else one made once and
kept in the data folder (every worker and host of a deployment must share it).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from omnirec.settings import Settings

SECRET_FILE = "link-secret"  # noqa: S105 (the file name, not a secret)
SEP = "\x1f"
SIGNATURE_BYTES = 12


@dataclass(frozen=True)
class Click:
    """What a tracking link says: which answer showed which item to whom."""

    recommendation_id: str
    customer_id: str
    item_id: str
    tenant: str | None = None  # whose answer (several tenants: the link names its own)


def link_secret(settings: Settings) -> bytes:
    """The key links are signed with: the configured one, else the data folder's (made once)."""
    if settings.serving.link_secret:
        return settings.serving.link_secret.encode()
    path = Path(settings.data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class Links:
    """Makes and checks tracking links with one key."""

    def __init__(self, secret: bytes, base_url: str, tenant: str | None = None) -> None:
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.tenant = tenant

    def _sign(self, payload: bytes) -> bytes:
        # the one-shot hmac.digest: hmac.new(...).digest() built a Python HMAC object per link,
        # most of a batch of 1,000 customers x 100 items
        return hmac.digest(self._secret, payload, "sha256")[:SIGNATURE_BYTES]

    def _token(self, payload: bytes) -> str:
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def token(self, click: Click) -> str:
        parts = (click.recommendation_id, click.customer_id, click.item_id)
        return self._token(SEP.join(parts + ((click.tenant,) if click.tenant else ())).encode())

    def url(self, click: Click) -> str:
        return f"{self.base_url}/v1/r/{self.token(click)}"

    def urls(self, recommendation_id: str, customer_id: str, item_ids: Sequence[str]) -> list[str]:
        """The links of one answer's items: `url` of each (this key's tenant), in one loop."""
        head = f"{recommendation_id}{SEP}{customer_id}{SEP}".encode()
        tail = f"{SEP}{self.tenant}".encode() if self.tenant else b""
        base, token = f"{self.base_url}/v1/r/", self._token
        return [base + token(head + item.encode() + tail) for item in item_ids]

    def read(self, token: str) -> Click | None:
        """The click a token names, or None when it is not one this key signed."""
        body, dot, signature = token.partition(".")
        if not dot:
            return None
        try:
            payload, given = _unb64(body), _unb64(signature)
        except ValueError:
            return None
        if not hmac.compare_digest(self._sign(payload), given):
            return None
        parts = payload.decode(errors="replace").split(SEP)
        return Click(*parts) if len(parts) in (3, 4) else None


def named_tenant(token: str) -> str | None:
    """The tenant a token says it belongs to, unchecked: whose key then checks its signature."""
    try:
        parts = _unb64(token.partition(".")[0]).decode(errors="replace").split(SEP)
    except ValueError:
        return None
    return parts[3] if len(parts) == 4 else None


def item_page(template: str | None, catalogue_url: str | None, item_id: str) -> str | None:
    """Where a tracking link sends the reader: the catalogue's own http(s) page of the item, else
    the configured template, else nowhere."""
    if catalogue_url and catalogue_url.startswith(("https://", "http://")):
        return catalogue_url
    if template:
        return template.replace("{item_id}", quote(item_id, safe=""))
    return None


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(raw: bytes) -> str:
    """URL-safe base64 without padding (base64.urlsafe_b64encode's result, a third cheaper)."""
    return binascii.b2a_base64(raw, newline=False).rstrip(b"=").translate(_URLSAFE).decode()


def _unb64(text: str) -> bytes:
    if len(text) > 4096:
        raise ValueError("too long")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
