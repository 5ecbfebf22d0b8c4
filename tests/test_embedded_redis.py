"""The embedded Redis: one per data folder, shared by every omnirec process, durable, never
orphaned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from omnirec.redis_runtime import EmbeddedRedis, SharedEmbeddedRedis, free_port
from tests.waiting import PATIENCE, wait_until


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) is gone for our purposes
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def wait_gone(pid: int, seconds: float = PATIENCE) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_processes_on_one_folder_share_one_server_and_the_last_stops_it(tmp_path: Path) -> None:
    first, second = SharedEmbeddedRedis(tmp_path), SharedEmbeddedRedis(tmp_path)
    url = first.acquire()
    assert second.acquire() == url
    pid = json.loads((tmp_path / "embedded.json").read_text())["pid"]
    redis.Redis.from_url(url).set("k", "v")
    first.release()  # the second still uses it: it keeps running
    assert alive(pid)
    assert redis.Redis.from_url(url).get("k") == b"v"
    second.release()
    assert wait_gone(pid)
    assert not (tmp_path / "embedded.json").exists()
    # the next user starts it again, with what was written before
    with SharedEmbeddedRedis(tmp_path) as again:
        assert redis.Redis.from_url(again).get("k") == b"v"


def test_a_stale_state_file_is_replaced(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "embedded.json").write_text(json.dumps({"pid": dead.pid, "port": free_port()}))
    with SharedEmbeddedRedis(tmp_path) as url:
        state = json.loads((tmp_path / "embedded.json").read_text())
        assert state["pid"] != dead.pid and url.endswith(f":{state['port']}/0")
        assert redis.Redis.from_url(url).ping()


def test_a_server_of_another_folder_is_not_joined(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "other", persist=False) as other:
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "embedded.json").write_text(
            json.dumps({"pid": other.pid, "port": other.port})
        )
        with SharedEmbeddedRedis(tmp_path / "mine") as url:
            assert url != other.url


def test_acknowledged_writes_survive_kill_9_of_the_server(tmp_path: Path) -> None:
    for policy in ("always", "everysec"):
        folder = tmp_path / policy
        server = EmbeddedRedis(folder, appendfsync=policy).start()
        client = redis.Redis.from_url(server.url)
        pipe = client.pipeline(transaction=True)
        for i in range(1000):
            pipe.xadd("events", {"i": i})
        pipe.execute()  # acknowledged: Redis answered
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        assert wait_gone(server.pid)
        client.close()
        with EmbeddedRedis(folder, port=free_port(), appendfsync=policy) as restarted:
            assert redis.Redis.from_url(restarted.url).xlen("events") == 1000, policy


def test_a_folder_from_before_the_append_only_file_keeps_its_data(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, persist=False).start()
    client = redis.Redis.from_url(server.url)
    client.set("old", "kept")
    client.save()  # dump.rdb, as the embedded Redis wrote before it had an append-only file
    client.close()
    server.stop()
    with EmbeddedRedis(tmp_path) as upgraded:
        assert redis.Redis.from_url(upgraded.url).get("old") == b"kept"
        wait_until(
            lambda: (
                not redis.Redis.from_url(upgraded.url).info("persistence")[
                    "aof_rewrite_in_progress"
                ]
            ),
            "the append-only file rewritten",
            every=0.05,
        )
    with EmbeddedRedis(tmp_path) as again:  # now loaded from the append-only file
        assert redis.Redis.from_url(again.url).get("old") == b"kept"


def kill_and_wait_for_restart(folder: Path, user: SharedEmbeddedRedis, url: str) -> int:
    """kill -9 the folder's redis-server; returns its pid once `user` started it again."""
    pid = int(json.loads((folder / "embedded.json").read_text())["pid"])
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    wait_until(lambda: user.restarts > 0, "the embedded Redis started again", every=0.1)
    assert redis.Redis.from_url(url).get("kept") == b"yes"  # same port, same data
    return pid


def test_the_process_that_started_it_restarts_it_when_it_dies(tmp_path: Path) -> None:
    shared = SharedEmbeddedRedis(tmp_path)
    url = shared.acquire()
    try:
        redis.Redis.from_url(url).set("kept", "yes")
        first_pid = kill_and_wait_for_restart(tmp_path, shared, url)
        assert json.loads((tmp_path / "embedded.json").read_text())["pid"] != first_pid
    finally:
        shared.release()
    assert not (tmp_path / "embedded.json").exists()


def test_a_process_that_only_joined_restarts_it_too(tmp_path: Path) -> None:
    starter, joiner = SharedEmbeddedRedis(tmp_path), SharedEmbeddedRedis(tmp_path)
    url = starter.acquire()
    assert joiner.acquire() == url
    redis.Redis.from_url(url).set("kept", "yes")
    starter.release()  # as when `omnirec serve` was killed and started again
    try:
        kill_and_wait_for_restart(tmp_path, joiner, url)
    finally:
        joiner.release()
    assert not (tmp_path / "embedded.json").exists()
