"""A fleet on 127.0.0.1: two instances of the demo, each ``uvicorn --workers 2``, behind Debian's HAProxy in
round-robin, sharing one real redis-server; for the tests and the benchmark of the shared failed-login limit.

HAProxy sets ``X-Forwarded-For`` to the address the client connected from, and the instances trust it
(``C2C__PROXY_HEADERS__TYPE=x-forwarded`` from 127.0.0.1): a client sending from 127.0.0.2 is the client
127.0.0.2 for every process. HAProxy checks the instances on the liveness probe, so they stay in while Redis is
down. The instances log JSON lines (``c2casgiutils.logs.JsonFormatter``) with the pid of the writing process.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.haproxy_servers import HAProxy
from tests.lifecycle_servers import LIVENESS, READINESS, ROOT, UvicornInstance
from tests.servers import RedisServer, free_port

SECRET = "fleet-secret-0123456789-abcdefghij"
JWT_SECRET = "fleet-jwt-secret-0123456789abcdef-0123456789"
WINDOW = 120  # seconds: longer than any phase of a test, so no failure leaves the window mid-phase


def log_config(path: Path, with_pid: bool = True) -> Path:
    """A uvicorn ``--log-config`` (JSON): every record as one JSON line on stderr, with its request id (and pid)."""
    filters: dict[str, Any] = {"request_id": {"()": "c2casgiutils.logs.RequestIdFilter"}}
    if with_pid:
        filters["pid"] = {"()": "tests.fleet_logging.PidFilter"}
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": filters,
        "formatters": {"json": {"()": "c2casgiutils.logs.JsonFormatter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": list(filters),
            }
        },
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {"uvicorn.error": {"level": "INFO"}, "uvicorn.access": {"level": "INFO"}},
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


class DemoFleet:
    """Redis, two demo instances (``a``, ``b``) of ``workers`` workers, HAProxy; ``env`` adds ``C2C__*`` settings.

    ``tree`` runs another checkout's demo and package (a baseline): its own directory is the working directory
    and the pid filter is left out (it lives in this checkout's tests).
    """

    def __init__(
        self,
        folder: Path,
        redis: RedisServer,
        *,
        env: Mapping[str, str] | None = None,
        workers: int = 2,
        tree: Path = ROOT,
    ) -> None:
        self.folder = folder
        self.redis = redis
        self.metrics_ports = {name: free_port() for name in ("a", "b")}
        config = log_config(folder / "logging.json", with_pid=tree == ROOT)
        self.instances = {
            name: UvicornInstance(
                folder / name,
                app="app:app",
                app_dir=tree / "examples" / "demo",
                cwd=tree,
                workers=workers,
                env={
                    "DEMO_DATABASE_URL": f"sqlite+aiosqlite:///{folder / name / 'demo.sqlite3'}",
                    "PYTHONDONTWRITEBYTECODE": "1",
                    "C2C__HTTP": "true",
                    "C2C__REDIS__URL": redis.url,
                    "C2C__AUTH__SECRET": SECRET,
                    "C2C__AUTH__JWT__SECRET": JWT_SECRET,
                    "C2C__AUTH__JWT__COOKIE__SECURE": "false",
                    "C2C__AUTH__RATE_LIMIT__MAX_FAILURES": "5",
                    "C2C__AUTH__RATE_LIMIT__WINDOW": str(WINDOW),
                    "C2C__PROXY_HEADERS__TYPE": "x-forwarded",
                    "C2C__PROXY_HEADERS__TRUSTED_HOSTS": "127.0.0.1",
                    "C2C__PROMETHEUS__PORT": str(self.metrics_ports[name]),
                    "C2C__PROMETHEUS__HOST": "127.0.0.1",
                    "C2C__ACCESS_LOG__SKIP_PATHS": f"{LIVENESS},{READINESS}",
                    **(env or {}),
                },
                extra_args=("--no-proxy-headers", "--log-config", str(config), "--timeout-keep-alive", "30"),
            )
            for name in ("a", "b")
        }
        self.haproxy: HAProxy | None = None

    def start(self) -> DemoFleet:
        for instance in self.instances.values():
            instance.start(wait=False)
        for instance in self.instances.values():
            instance.wait_ready()
        self.haproxy = HAProxy(
            self.folder,
            {name: instance.port for name, instance in self.instances.items()},
            check=LIVENESS,  # Redis down must not take the instances out: the fallback is what is tested
            frontend=(
                "http-request del-header Forwarded",
                "http-request del-header X-Forwarded-Port",
                "http-request set-header X-Forwarded-For %[src]",
                "http-request set-header X-Forwarded-Proto http",
                "http-request set-header X-Forwarded-Host %[req.hdr(host)]",
            ),
        )
        for _ in range(4):  # both servers up and answering through HAProxy
            assert httpx.get(self.url + "/", timeout=30).status_code == 200
        return self

    @property
    def url(self) -> str:
        assert self.haproxy is not None
        return self.haproxy.url

    def client(self, address: str, **kwargs: Any) -> httpx.Client:
        """A client connecting from ``address`` (any of 127.0.0.0/8): a client of its own for the service."""
        return httpx.Client(
            base_url=self.url, transport=httpx.HTTPTransport(local_address=address), timeout=60, **kwargs
        )

    def async_client(self, address: str) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)  # one connection per request
        return httpx.AsyncClient(
            base_url=self.url,
            transport=httpx.AsyncHTTPTransport(local_address=address, limits=limits),
            timeout=60,
        )

    def log_lines(self) -> Iterator[tuple[str, str]]:
        """(instance name, line) of every run of both instances."""
        for name, instance in self.instances.items():
            for path in sorted(instance.folder.glob("uvicorn-*.log")):
                for line in path.read_text(errors="replace").splitlines():
                    yield name, line

    def records(self) -> list[dict[str, Any]]:
        """Every JSON log record of the four processes, with ``instance``."""
        found = []
        for name, line in self.log_lines():
            if line.startswith("{"):
                found.append({**json.loads(line), "instance": name})
        return found

    def audit(self) -> list[dict[str, Any]]:
        return [record for record in self.records() if record["logger"] == "c2casgiutils.audit"]

    def metric(self, name: str, **labels: str) -> float:
        """The sum over both instances of a metric's samples matching ``labels``."""
        total = 0.0
        pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? ([0-9.e+-]+)$")
        for port in self.metrics_ports.values():
            for line in httpx.get(f"http://127.0.0.1:{port}/", timeout=30).text.splitlines():
                match = pattern.match(line)
                if match is None:
                    continue
                found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
                if all(found.get(key) == value for key, value in labels.items()):
                    total += float(match.group(2))
        return total

    def close(self) -> None:
        if self.haproxy is not None:
            self.haproxy.close()
            self.haproxy = None
        for instance in self.instances.values():
            instance.close()
