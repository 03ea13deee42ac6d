"""Real parts for the header tests: a test CA, the default app under uvicorn, nginx as the HTTPS front, a CDN stand-in.

Everything listens on 127.0.0.0/8 with its own configuration and is stopped by its pid. The npm packages come
from ``tests/scanners/install.sh``; without them (or without node, nginx, Chromium) the tests call
``missing()``: a failure under CI, a skip elsewhere.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import http.server
import ipaddress
import json
import mimetypes
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import missing
from tests.servers import find_binary, free_port, stop_process, wait_port, wait_port_closed

ROOT = Path(__file__).parent.parent.parent
SCANNERS = Path(__file__).parent
NODE_MODULES = SCANNERS / "node_modules"
INSTALL_COMMAND = "tests/scanners/install.sh"
PUBLIC_HOST = "service.example.com"
# Third-party hosts of FastAPI's /docs and /redoc pages, answered by the CDN stand-in in the browser tests.
CDN_HOSTS = ("cdn.jsdelivr.net", "fonts.googleapis.com", "fonts.gstatic.com", "fastapi.tiangolo.com", "cdn.redoc.ly")


def require_node_modules(*packages: str) -> Path:
    """The installed npm folder, or ``missing()`` when the install script has not run."""
    node = shutil.which("node")
    if node is None:
        missing("node (Node.js 20)")
    for package in packages:
        if not (NODE_MODULES / package / "package.json").exists():
            missing(f"npm package {package} (run {INSTALL_COMMAND})")
    return NODE_MODULES


class TestCA:
    __test__ = False  # not a test class for pytest

    """A CA made for one test session and a server certificate it signs for ``names`` (PEM files in a folder)."""

    def __init__(self, directory: Path, names: tuple[str, ...]) -> None:
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "c2casgiutils test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
        alternative_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca = directory / "ca.crt"
        self.cert = directory / "server.crt"
        self.key = directory / "server.key"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.key.chmod(0o644)  # nginx's workers run as an unprivileged user; the key is a throw-away one
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.spki_sha256 = base64.b64encode(hashlib.sha256(spki).digest()).decode()
        """For Chromium's ``--ignore-certificate-errors-spki-list``: the server key, whatever the CA."""


class DefaultApp:
    """``uvicorn tests.scanners.default_app:app`` on a free port, in production mode (``C2C__HTTP`` unset)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.log = directory / "uvicorn.log"
        env = {key: value for key, value in os.environ.items() if not key.startswith("C2C__")}
        env.update({"C2C__PROMETHEUS__PORT": "", "PYTHONPATH": str(ROOT)})
        with self.log.open("wb") as log:
            self.process: subprocess.Popen[bytes] | None = subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "tests.scanners.default_app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--no-server-header",
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_port(self.port, timeout=30)
            httpx.get(f"{self.url}/", timeout=10).raise_for_status()
        except Exception:
            self.close()
            raise RuntimeError(f"uvicorn did not start:\n{self.output()}") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self) -> None:
        stop_process(self.process)
        self.process = None
        with contextlib.suppress(TimeoutError):
            wait_port_closed(self.port, timeout=5)


def _loopback_address_with_port(port: int) -> str | None:
    """A 127.x.y.z address whose ``port`` is free (to give a front the real HTTPS port 443), or None."""
    for third in range(200, 216):
        address = f"127.0.{third}.{os.getpid() % 200 + 20}"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                continue
            return address
    return None


class NginxFront:
    """nginx terminating TLS for ``PUBLIC_HOST`` in front of ``upstream_port``, as a production proxy does.

    It listens on a free port of 127.0.0.1, and also on port 443 of a 127.x address when it can bind it (as
    root), the port the Observatory's own ``scan()`` uses. It has no plain-HTTP listener: redirecting HTTP to
    HTTPS is the proxy's job, not the application's, so the Observatory finds no HTTP site to check.
    """

    def __init__(self, directory: Path, ca: TestCA, upstream_port: int) -> None:
        nginx = find_binary("nginx", "/usr/sbin")
        if nginx is None:
            missing("nginx (Debian package)")
        self.directory = directory / "nginx"
        self.directory.mkdir()
        self.directory.chmod(0o755)
        self.port = free_port()
        self.closed_port = free_port()  # nothing listens there: the "HTTP site" of the redirection test
        self.address_443 = _loopback_address_with_port(443) if os.geteuid() == 0 else None
        listens = f"listen 127.0.0.1:{self.port} ssl;"
        if self.address_443 is not None:
            listens += f"\n        listen {self.address_443}:443 ssl;"
        user = "user root;" if os.geteuid() == 0 else ""
        temp = "\n".join(
            f"    {name}_temp_path {self.directory / name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (self.directory / "nginx.conf").write_text(
            f"""
{user}
worker_processes 1;
daemon off;
pid {self.directory / "nginx.pid"};
error_log {self.directory / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temp}
    server_tokens off;
    server {{
        {listens}
        server_name {PUBLIC_HOST};
        ssl_certificate {ca.cert};
        ssl_certificate_key {ca.key};
        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
""",
            encoding="utf-8",
        )
        with (self.directory / "output.log").open("wb") as log:
            self.process: subprocess.Popen[bytes] | None = subprocess.Popen(  # noqa: S603
                [nginx, "-p", str(self.directory), "-c", str(self.directory / "nginx.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_port(self.port, timeout=30)
        except TimeoutError:
            output = self.output()
            self.close()
            raise RuntimeError(f"nginx did not start:\n{output}") from None

    def output(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.directory.glob("*.log")) if path.exists()
        )

    def close(self) -> None:
        stop_process(self.process)
        self.process = None
        with contextlib.suppress(TimeoutError):
            wait_port_closed(self.port, timeout=5)


def grade(front: NginxFront, ca: TestCA, paths: list[str]) -> dict[str, Any]:
    """Run ``grade.mjs`` (Observatory + CSP Evaluator) on ``paths`` of ``PUBLIC_HOST`` through the front."""
    require_node_modules("@mdn/mdn-http-observatory", "csp_evaluator")
    preload = NODE_MODULES / "@mdn/mdn-http-observatory/conf/hsts-preload.json"
    if not preload.exists():
        missing(f"the Observatory's HSTS preload list (run {INSTALL_COMMAND}, which writes an empty one)")
    options = {
        "host": PUBLIC_HOST,
        "address": "127.0.0.1",
        "httpsPort": front.port,
        "httpPort": front.closed_port,
        "paths": paths,
        "stock": False,
    }
    outputs = [_run_grader(options, ca)]
    if front.address_443 is not None:
        outputs.append(_run_grader({**options, "address": front.address_443, "paths": [], "stock": True}, ca))
        outputs[0]["stock"] = outputs[1]["stock"]
    return outputs[0]


def _run_grader(options: dict[str, Any], ca: TestCA) -> dict[str, Any]:
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(ca.ca)}
    process = subprocess.run(  # noqa: S603
        ["node", str(SCANNERS / "grade.mjs"), json.dumps(options)],  # noqa: S607
        cwd=SCANNERS,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    result: dict[str, Any] = json.loads(process.stdout)
    return result


class CdnStandIn:
    """An HTTPS server answering for ``CDN_HOSTS``: jsDelivr's ``/npm/<package>@<range>/<file>`` from node_modules.

    ``swagger-ui-dist`` and ``redoc`` are the npm packages that jsDelivr serves for FastAPI's pages. Google
    Fonts and the favicons get small stand-in answers. Every answer allows cross-origin use (fonts need CORS).
    Requests are recorded, so a test can check that the page loaded what it expects.
    """

    def __init__(self, ca: TestCA) -> None:
        require_node_modules("swagger-ui-dist", "redoc")
        self.requests: list[str] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                host = (self.headers.get("host") or "").split(":")[0]
                stand_in.requests.append(f"{host}{self.path}")
                status, content_type, body = stand_in.answer(host, self.path.split("?")[0])
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Cross-Origin-Resource-Policy", "cross-origin")
                self.end_headers()
                self.wfile.write(body)

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(ca.cert, ca.key)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, host: str, path: str) -> tuple[int, str, bytes]:
        if host == "cdn.jsdelivr.net" and path.startswith("/npm/"):
            package_and_version, _, file = path[len("/npm/") :].partition("/")
            package = package_and_version.rsplit("@", 1)[0]
            if package in ("swagger-ui-dist", "redoc"):
                base = (NODE_MODULES / package).resolve()
                target = (base / file).resolve()
                if target.is_relative_to(base) and target.is_file():
                    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                    return 200, content_type, target.read_bytes()
        if host == "fonts.googleapis.com":
            return 200, "text/css", b"/* stand-in for Google Fonts */"
        if host in ("fastapi.tiangolo.com", "cdn.redoc.ly"):
            return 200, "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'
        return 404, "text/plain", b"not in the stand-in"

    def host_resolver_rules(self) -> str:
        """Chromium's ``--host-resolver-rules``: every CDN host to this server (port included)."""
        return ", ".join(f"MAP {host}:443 127.0.0.1:{self.port}" for host in CDN_HOSTS)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def temporary_directory(prefix: str) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o755)
    return directory
