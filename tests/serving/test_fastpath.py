"""The recommendation route's fast path gives the typed handler's answers, and declines the rest."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import httpx
import pytest

from serving.fastpath import bool_value, id_value, int_value, query_params
from tests.deploy import KEYS, Deployment


def test_query_params_are_read_like_a_browser_sends_them() -> None:
    assert query_params(b"") == {}
    assert query_params(b"limit=5&channel=web&&explain=") == {
        "limit": "5",
        "channel": "web",
        "explain": "",
    }
    assert query_params(b"category=home+%26+garden&store_id=S%2B1") == {
        "category": "home & garden",
        "store_id": "S+1",
    }
    assert query_params(b"category=caf%C3%A9") == {"category": "café"}


@pytest.mark.parametrize(
    "raw",
    [b"limit=5&limit=6", "category=café".encode(), b"category=%FF%FE", b"a=1&a"],
)
def test_query_params_decline_what_they_cannot_read_exactly(raw: bytes) -> None:
    assert query_params(raw) is None


def test_values_are_checked_as_strictly_as_the_typed_handler() -> None:
    assert int_value("10", 1, 100) == 10 and int_value("100", 1, 100) == 100
    assert [int_value(v, 1, 100) for v in ["0", "101", "-1", " 5", "5.0", "٣", "1e2"]] == [None] * 7
    assert [bool_value(v) for v in ["true", "false", "1", "0"]] == [True, False, True, False]
    assert bool_value("maybe") is None and bool_value("True ") is None
    assert id_value("C00000001") == "C00000001" and id_value("a@b.example") == "a@b.example"
    assert [id_value(v) for v in [None, "", "bad id", "x" * 129, "<script>", "-lead"]] == [None] * 6


@pytest.fixture(scope="module")
def typed_only(deployment: Deployment) -> Iterator[Deployment]:
    """A second server on the same Redis and MLflow store, with the fast paths turned off."""
    env = {**deployment.env, "OMNIREC_FAST_PATHS": "0"}
    other = dataclasses.replace(deployment, env=env, server=None, base_url="", trained=[])
    other.start_server()
    yield other
    other.stop_server()


QUERIES = [
    ("C00000003", {}),
    ("C00000003", {"limit": 1}),
    ("C00000003", {"limit": 100, "exclude_purchased": "false"}),
    ("C00000004", {"limit": 7, "channel": "app", "explain": "true"}),
    ("C00000005", {"store_id": "S002", "limit": 10}),
    ("C00000005", {"category": "shoes", "exclude_purchased": "0"}),
    ("never-seen-before", {"limit": 4, "channel": "store"}),
    ("C00000006", {"limit": 5, "utm_source": "newsletter"}),  # unknown parameters are ignored
]


def _without_request_id(body: dict[str, object]) -> dict[str, object]:
    """The answer without what differs per request: its request id, and the same id at the
    start of its recommendation id (which must carry the request id, then the variant)."""
    rid = str(body["request_id"])
    recommendation = str(body["recommendation_id"])
    assert recommendation.startswith(rid + ".")
    return {
        **{k: v for k, v in body.items() if k != "request_id"},
        "recommendation_id": recommendation.removeprefix(rid),
    }


def _served(dep: Deployment, outcome: str) -> float:
    text = httpx.get(f"{dep.base_url}/metrics").text
    pattern = rf'omnirec_fast_path_total\{{handler="[^"]*for_customer",outcome="{outcome}"\}} (\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_fast_path_answers_equal_the_typed_handler(
    deployment: Deployment, typed_only: Deployment
) -> None:
    served_before = _served(deployment, "served")
    headers = {"X-API-Key": KEYS["recommend"]}
    for customer, params in QUERIES:
        path = f"/v1/customers/{customer}/recommendations"
        fast = httpx.get(deployment.base_url + path, params=params, headers=headers)
        typed = httpx.get(typed_only.base_url + path, params=params, headers=headers)
        assert fast.status_code == typed.status_code == 200, (fast.text, typed.text)
        assert fast.headers["content-type"] == typed.headers["content-type"]
        assert _without_request_id(fast.json()) == _without_request_id(typed.json()), params
        assert len(fast.json()["request_id"]) == 32
    assert _served(deployment, "served") - served_before == len(QUERIES)
    assert _served(typed_only, "served") == 0


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"limit": "0"}, 400, "limit"),
        ({"limit": "ten"}, 400, "limit"),
        ({"channel": "fax"}, 400, "channel"),
        ({"store_id": "S 1;DROP"}, 400, "store_id"),
        ({"explain": "perhaps"}, 400, "explain"),
    ],
)
def test_what_the_fast_path_declines_gets_the_typed_handlers_answer(
    deployment: Deployment,
    typed_only: Deployment,
    params: dict[str, object],
    status: int,
    field: str | None,
) -> None:
    declined_before = _served(deployment, "declined")
    headers = {"X-API-Key": KEYS["recommend"]}
    path = "/v1/customers/C00000003/recommendations"
    fast = httpx.get(deployment.base_url + path, params=params, headers=headers)  # type: ignore[arg-type]
    typed = httpx.get(typed_only.base_url + path, params=params, headers=headers)  # type: ignore[arg-type]
    assert fast.status_code == typed.status_code == status, fast.text
    if field:
        assert field in fast.text
        assert fast.json() == typed.json()
    assert _served(deployment, "declined") == declined_before + 1


@pytest.mark.parametrize(
    "path",
    ["/v1/customers/C00000003/recommendations", "/v1/items/I000003/similar", "/v1/trending"],
)
def test_a_parameter_given_twice_is_a_400_naming_it(
    deployment: Deployment, typed_only: Deployment, path: str
) -> None:
    headers = {"X-API-Key": KEYS["recommend"]}
    for dep in (deployment, typed_only):
        answer = httpx.get(dep.base_url + path + "?limit=2&limit=7", headers=headers)
        assert answer.status_code == 400, answer.text
        assert answer.json()["field"] == "limit"


def test_auth_runs_before_the_fast_path(deployment: Deployment) -> None:
    url = f"{deployment.base_url}/v1/customers/C00000003/recommendations"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"X-API-Key": KEYS["events"]}).status_code == 403
    bearer = httpx.get(url, headers={"Authorization": f"Bearer {KEYS['tablet']}"})
    assert bearer.status_code == 200 and bearer.json()["items"]
