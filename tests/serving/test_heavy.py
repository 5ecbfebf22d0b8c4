"""Heavy requests in the worker's child process: the batch route and bulk events answer the same
as when the worker computes them, and keep answering when that process dies."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable

import httpx

from tests.deploy import Deployment
from tests.waiting import wait_until


def computed(dep: Deployment, route: str, where: str) -> float:
    text = httpx.get(f"{dep.base_url}/metrics").text
    found = re.search(
        rf'omnirec_heavy_requests_total{{route="{route}",where="{where}"}} ([\d.e+]+)', text
    )
    return float(found.group(1)) if found else 0.0


def until(predicate: Callable[[], bool]) -> None:
    wait_until(predicate, "the condition")


def batch(dep: Deployment, customers: list[str]) -> dict[str, object]:
    with dep.client() as c:
        r = c.post("/v1/recommendations/batch", json={"customer_ids": customers, "limit": 4})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def without_request_ids(body: dict[str, object]) -> object:
    """The answers without their request's id; each recommendation id is that id, then the
    answer's place in the batch, then the variant (checked, then compared without the id)."""
    results = body["results"]
    assert isinstance(results, list)
    rid = str(body["request_id"])
    for k, r in enumerate(results):
        assert r["recommendation_id"] == f"{rid}-{k}._.default._", r["recommendation_id"]
    answers = []
    for r in results:
        items = r["items"]
        # each item's tracking link names the answer's recommendation id: checked, then dropped
        assert all(i["link"].count("/v1/r/") == 1 for i in items)
        answers.append(
            {k: v for k, v in r.items() if k not in {"request_id", "recommendation_id", "items"}}
            | {"items": [{k: v for k, v in i.items() if k != "link"} for i in items]}
        )
    return answers


def test_batch_in_the_child_process_answers_as_the_worker_does(deployment: Deployment) -> None:
    # customers no other test posts events for (a live session makes answers depend on the second)
    customers = [f"C{i:08d}" for i in range(41, 81)] + ["unknown-customer"]
    in_process_before = computed(deployment, "batch", "process")
    answers = [batch(deployment, customers)]  # the first starts the child
    until(
        lambda: (
            answers.append(batch(deployment, customers))
            or computed(deployment, "batch", "process") > in_process_before
        )
    )
    assert computed(deployment, "batch", "worker") >= 1
    by_worker, by_child = answers[0], answers[-1]
    assert by_child["model_version"] == by_worker["model_version"]
    assert without_request_ids(by_child) == without_request_ids(by_worker)


def test_bulk_events_in_the_child_process_are_stored_and_bad_bodies_still_400(
    deployment: Deployment,
) -> None:
    tag = f"{time.time_ns()}"
    posted = 0

    def post_bulk() -> httpx.Response:
        nonlocal posted
        events = [
            {
                "customer_id": "C00000021",
                "item_id": f"I{(posted + i) % 150:06d}",
                "event_type": "view",
                "channel": "app",
                "event_id": f"heavy-{tag}-{posted + i}",
            }
            for i in range(20)
        ]
        with deployment.client("events") as c:
            r = c.post("/v1/events/bulk", json={"events": events})
        posted += 20
        return r

    before = computed(deployment, "events", "process")
    until(
        lambda: (
            post_bulk().status_code == 202 and computed(deployment, "events", "process") > before
        )
    )
    with deployment.client("events") as c:
        retry = c.post(
            "/v1/events/bulk",
            json={
                "events": [
                    {
                        "customer_id": "C00000021",
                        "item_id": "I000001",
                        "event_type": "view",
                        "channel": "app",
                        "event_id": f"heavy-{tag}-0",
                    },
                    {
                        "customer_id": "C00000021",
                        "item_id": "<script>",
                        "event_type": "view",
                        "channel": "app",
                    },
                ]
            },
        )
        broken = c.post(
            "/v1/events/bulk",
            content=b'{"events": [{"customer_id": 5}]}',
            headers={"Content-Type": "application/json"},
        )
    assert retry.status_code == 202, retry.text
    assert (retry.json()["accepted"], retry.json()["duplicates"], retry.json()["rejected"]) == (
        1,
        1,
        1,
    )
    assert retry.json()["errors"][0]["field"] == "item_id"
    assert broken.status_code == 400 and "customer_id" in broken.text  # Litestar's own 400
    with deployment.client("tablet") as c:
        activity = c.get("/v1/customers/C00000021/profile").json()["activity"]
    assert activity[0]["channel"] == "app"  # stored by the child, read by the worker


def test_a_killed_child_process_costs_no_answer(deployment: Deployment) -> None:
    customers = [f"C{i:08d}" for i in range(1, 21)]
    until(lambda: bool(batch(deployment, customers)) and _child_pids(deployment) != [])
    for pid in _child_pids(deployment):
        os.kill(pid, signal.SIGKILL)
    worker_before = computed(deployment, "batch", "worker")
    for _ in range(5):  # answered by the worker meanwhile
        assert len(batch(deployment, customers)["results"]) == 20  # type: ignore[arg-type]
    assert computed(deployment, "batch", "worker") > worker_before
    process_before = computed(deployment, "batch", "process")
    until(
        lambda: (
            bool(batch(deployment, customers))
            and computed(deployment, "batch", "process") > process_before
        )
    )


def _child_pids(dep: Deployment) -> list[int]:
    assert dep.server is not None
    found = subprocess.run(
        ["pgrep", "-f", "multiprocessing.spawn", "-P", str(dep.server.pid)],
        capture_output=True,
        text=True,
    )
    return [int(p) for p in found.stdout.split()]
