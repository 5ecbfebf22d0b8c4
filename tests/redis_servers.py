"""Test helper: real redis-server processes the tests start on free loopback ports and stop:
a 3-master Redis Cluster, and a TLS-only server with an ACL user and client certificates."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import redis.cluster

from omnirec.redis_runtime import free_port
from tests.waiting import PATIENCE, wait_until

TLS_USER, TLS_PASSWORD = "omnirec-app", "tls-test-password-1"


def system_redis_server() -> str:
    """The system's redis-server and redis-cli (Debian's redis-server / redis-tools), or skip."""
    found = shutil.which("redis-server")
    if not found or not shutil.which("redis-cli"):
        pytest.skip("redis-server / redis-cli not installed: cluster and TLS tests not run")
    return found


def _wait(check: Callable[[], object], what: str) -> None:
    wait_until(check, f"{what} ready", every=0.1, ignore=(redis.RedisError, OSError))


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each, then up to 10 s for each to exit before SIGKILL."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            process.kill()


def cluster_port() -> int:
    """A free port P whose cluster bus port P + 10000 is free too (Redis needs P <= 55535)."""
    for _ in range(200):
        port = random.randint(20_000, 45_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _cluster_ok(port: int) -> bool:
    text = subprocess.run(
        ["redis-cli", "-p", str(port), "cluster", "info"],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    ).stdout
    return "cluster_state:ok" in text


@dataclass
class Cluster:
    """Three masters, no replicas; a killed master leaves the others serving their slots."""

    folder: Path
    ports: list[int] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self) -> Cluster:
        binary = system_redis_server()
        self.ports = [cluster_port() for _ in range(3)]
        try:
            self._start(binary)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, binary: str) -> None:
        for port in self.ports:
            node = self.folder / str(port)
            node.mkdir(parents=True)
            self.processes[port] = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(node),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-require-full-coverage",
                    "no",
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                    "--save",
                    "",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for port in self.ports:
            _wait(lambda p=port: redis.Redis(port=p).ping(), f"cluster node {port}")
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=PATIENCE,
        )
        for port in self.ports:
            _wait(lambda p=port: _cluster_ok(p), "cluster state")
        client = redis.cluster.RedisCluster(host="127.0.0.1", port=self.ports[0])
        _wait(lambda: client.set("omnirec-test:ready", 1), "cluster writes")
        client.close()

    def keys_per_master(self, pattern: str) -> dict[int, int]:
        counts = {}
        for port in self.ports:
            if self.processes[port].poll() is None:
                counts[port] = sum(1 for _ in redis.Redis(port=port).scan_iter(pattern, 5000))
        return counts

    def kill(self, port: int) -> None:
        self.processes[port].kill()
        self.processes[port].wait()

    def stop(self) -> None:
        stop_all(list(self.processes.values()))


@dataclass
class TlsRedis:
    """TLS only (no plain port), client certificates required, the default user switched off and
    one ACL user with a password; certificates made here with openssl."""

    folder: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def path(self, name: str) -> str:
        return str(self.folder / name)

    def url(self, password: str = TLS_PASSWORD) -> str:
        return f"rediss://{TLS_USER}:{password}@127.0.0.1:{self.port}/0"

    def _certificates(self) -> None:
        openssl = shutil.which("openssl")
        if not openssl:
            pytest.skip("openssl not installed: TLS tests not run")

        def run(*args: str) -> None:
            subprocess.run([openssl, *args], check=True, capture_output=True, cwd=self.folder)

        (self.folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run(
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=omnirec test CA",
        )
        for name in ("server", "client"):
            run(
                "req",
                "-new",
                "-nodes",
                "-newkey",
                "rsa:2048",
                "-keyout",
                f"{name}.key",
                "-out",
                f"{name}.csr",
                "-subj",
                f"/CN={name}",
            )
            run(
                "x509",
                "-req",
                "-in",
                f"{name}.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                f"{name}.crt",
                "-days",
                "2",
                *(["-extfile", "san.ext"] if name == "server" else []),
            )

    def start(self) -> TlsRedis:
        binary = system_redis_server()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._certificates()
        self.port = free_port()
        config = self.folder / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "port 0",
                    f"tls-port {self.port}",
                    "bind 127.0.0.1",
                    f"dir {self.folder}",
                    f"tls-cert-file {self.path('server.crt')}",
                    f"tls-key-file {self.path('server.key')}",
                    f"tls-ca-cert-file {self.path('ca.crt')}",
                    "tls-auth-clients yes",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "user default off",
                    f"user {TLS_USER} on >{TLS_PASSWORD} ~* &* +@all",
                ]
            )
            + "\n"
        )
        log = self.folder / "redis.log"
        self.process = subprocess.Popen(
            [binary, str(config)], stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        time.sleep(0.3)
        if self.process.poll() is not None:
            text = log.read_text()
            if "TLS" in text or "tls" in text:
                pytest.skip(f"this redis-server has no TLS support: {text[-300:]}")
            raise RuntimeError(f"TLS redis-server did not start: {text[-2000:]}")
        client = self.client()
        _wait(client.ping, "TLS redis")
        client.close()
        return self

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.url(),
            ssl_ca_certs=self.path("ca.crt"),
            ssl_certfile=self.path("client.crt"),
            ssl_keyfile=self.path("client.key"),
        )

    @property
    def env(self) -> dict[str, str]:
        return {
            "OMNIREC_REDIS_CA_FILE": self.path("ca.crt"),
            "OMNIREC_REDIS_CERT_FILE": self.path("client.crt"),
            "OMNIREC_REDIS_KEY_FILE": self.path("client.key"),
        }

    def stop(self) -> None:
        stop_all([self.process] if self.process is not None else [])


@dataclass
class SentinelGroup:
    """A master, its replica and one Sentinel watching them (quorum 1, down after 1 s)."""

    folder: Path
    name: str = "omnirec-master"
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['sentinel']}/0"

    def start(self) -> SentinelGroup:
        binary = system_redis_server()
        self.ports = {role: free_port() for role in ("master", "replica", "sentinel")}
        try:
            for role in ("master", "replica"):
                node = self.folder / role
                node.mkdir(parents=True)
                extra = (
                    ["--replicaof", "127.0.0.1", str(self.ports["master"])]
                    if role == "replica"
                    else []
                )
                self.processes[role] = subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(self.ports[role]),
                        "--bind",
                        "127.0.0.1",
                        "--dir",
                        str(node),
                        "--appendonly",
                        "yes",
                        "--save",
                        "",
                        *extra,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            _wait(lambda: "master_link_status:up" in _info(self.ports["replica"]), "replica")
            config = self.folder / "sentinel.conf"
            config.write_text(
                "\n".join(
                    [
                        f"port {self.ports['sentinel']}",
                        "bind 127.0.0.1",
                        f"dir {self.folder}",
                        f"sentinel monitor {self.name} 127.0.0.1 {self.ports['master']} 1",
                        f"sentinel down-after-milliseconds {self.name} 1000",
                        f"sentinel failover-timeout {self.name} 5000",
                    ]
                )
                + "\n"
            )
            self.processes["sentinel"] = subprocess.Popen(
                [binary, str(config), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _wait(lambda: self.master_port() == self.ports["master"], "sentinel")
        except BaseException:
            self.stop()
            raise
        return self

    def master_port(self) -> int:
        reply = redis.Redis(port=self.ports["sentinel"]).sentinel_get_master_addr_by_name(self.name)
        return int(reply[1])

    def kill_master(self) -> None:
        self.processes["master"].kill()
        self.processes["master"].wait()
        _wait(lambda: self.master_port() == self.ports["replica"], "failover")

    def stop(self) -> None:
        stop_all(list(self.processes.values()))


def _info(port: int) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), "info", "replication"],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    ).stdout
