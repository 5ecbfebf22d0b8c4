"""A running deployment (real Redis, real MLflow store, real HTTP server) shared by the API
tests, and a real headless chromium (Debian's) for the pages' tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy import Deployment, running


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[Deployment]:
    with running(tmp_path_factory.mktemp("deployment"), redis_server) as dep:
        yield dep


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(
    os.environ.get("OMNIREC_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts")
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "BROWSER TESTS SKIPPED: Debian's chromium is not installed (./dev test installs it)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                # the shop page is served by the test as http://shop.test (a public origin) and
                # calls the service on loopback: a deployment's service is public, so the
                # browser's local-network checks, which a test on one machine meets, are off
                "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,"
                "PrivateNetworkAccessSendPreflights,PrivateNetworkAccessRespectPreflightResults",
            ],
        )
        yield chromium
        chromium.close()
