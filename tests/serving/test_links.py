"""Tracking links made in bulk (a batch's items) are the links made one by one, and read back."""

from __future__ import annotations

import base64
import os

import pytest

from serving.links import Click, Links, _b64


@pytest.mark.parametrize("tenant", [None, "north"])
def test_links_of_an_answer_are_each_items_link_and_read_back(tenant: str | None) -> None:
    links = Links(b"k" * 32, "https://shop.test/", tenant)
    items = ["I000001", "I000002", "sku:åß-9"]
    urls = links.urls("r1.b0.v3.home.email", "C00000042", items)
    assert urls == [links.url(Click("r1.b0.v3.home.email", "C00000042", i, tenant)) for i in items]
    for item, url in zip(items, urls, strict=True):
        assert url.startswith("https://shop.test/v1/r/")
        token = url.rsplit("/", 1)[1]
        assert links.read(token) == Click("r1.b0.v3.home.email", "C00000042", item, tenant)
        assert Links(b"x" * 32, "https://shop.test").read(token) is None  # another key


def test_b64_is_urlsafe_base64_without_padding() -> None:
    for size in range(40):
        raw = os.urandom(size)
        assert _b64(raw) == base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
