"""Real reverse proxies for the tests: nginx, Apache httpd and HAProxy in front of the test service.

Each proxy runs from its own configuration in a temporary directory (no system service, no file of the
Debian packaging) on free 127.0.0.1 ports, plain HTTP and TLS (a self-signed certificate made with
``openssl``), and is stopped by its pid. The service is ``tests/proxy_apps/service.py`` under a real
uvicorn, started with ``--no-proxy-headers`` so that ForwardedHeadersMiddleware sees the proxy's address.

Flavours of proxy configuration:

- ``recommended`` (and ``forwarded``, with RFC 7239 ``Forwarded``): the files of ``examples/proxies/``,
  as users copy them; the values a user would adapt (listen ports, the service address, the certificate
  paths) are replaced here, and each replacement must find its text, so that a change of the example that
  escapes the test fails loudly;
- ``copied``: the configurations found all over the internet (nginx's four-line snippet, Apache's plain
  ``ProxyPass``, HAProxy's ``option forwardfor``), with the same ``/svc/`` prefix stripped by the proxy.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tests.servers import find_binary, free_port, stop_process, wait_port, wait_port_closed

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples" / "proxies"
PUBLIC_HOST = "public.example"
PREFIX = "/svc"
# Where the examples expect things; the fixtures put their own values there.
EXAMPLE_SERVICE = "127.0.0.1:8080"
EXAMPLE_CERT = "/etc/ssl/certs/service.crt"
EXAMPLE_KEY = "/etc/ssl/private/service.key"
EXAMPLE_PEM = "/etc/haproxy/certs/service.pem"
APACHE_MODULES = Path("/usr/lib/apache2/modules")


def _replace(text: str, replacements: Mapping[str, str], source: str) -> str:
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"{source}: expected {old!r} to put the test's value in its place")
        text = text.replace(old, new)
    return text


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for PUBLIC_HOST and 127.0.0.1: PEM files of the certificate, key, and both."""

    cert: Path
    key: Path
    combined: Path

    @classmethod
    def make(cls, directory: Path) -> Certificate:
        openssl = find_binary("openssl")
        if openssl is None:
            raise FileNotFoundError("openssl")
        cert, key, combined = directory / "service.crt", directory / "service.key", directory / "service.pem"
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
                "-subj",
                f"/CN={PUBLIC_HOST}",
                "-addext",
                f"subjectAltName=DNS:{PUBLIC_HOST},IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        combined.write_bytes(cert.read_bytes() + key.read_bytes())
        return cls(cert=cert, key=key, combined=combined)


class ServiceProcess:
    """The test service under uvicorn on a free port, configured by ``C2C__*`` variables."""

    def __init__(self, settings: Mapping[str, str]) -> None:
        self.port = free_port()
        self.settings = dict(settings)
        self.directory = Path(tempfile.mkdtemp(prefix="c2c-proxy-app-"))
        self.log = self.directory / "uvicorn.log"
        env = {key: value for key, value in os.environ.items() if not key.startswith("C2C__")}
        env.update({"C2C__PROMETHEUS__PORT": "", **self.settings})
        with self.log.open("wb") as log:
            self.process: subprocess.Popen[bytes] | None = subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "tests.proxy_apps.service:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--no-proxy-headers",
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_port(self.port, timeout=60)
        except TimeoutError:
            self.close()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        stop_process(self.process)
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


class Proxy:
    """A reverse proxy on two free ports (plain HTTP and TLS) in front of ``service_port``."""

    name: ClassVar[str]
    binary_name: ClassVar[str]
    examples: ClassVar[dict[str, str]]  # flavour -> file of examples/proxies

    def __init__(self, flavour: str, service_port: int, certificate: Certificate) -> None:
        binary = find_binary(self.binary_name, "/usr/sbin", "/usr/local/sbin")
        if binary is None:
            raise FileNotFoundError(self.binary_name)
        self.binary = binary
        self.flavour = flavour
        self.service_port = service_port
        self.certificate = certificate
        self.http_port = free_port()
        self.https_port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix=f"c2c-{self.name}-"))
        # Workers of nginx and Apache started by root drop to an unprivileged user: let it read its files.
        self.directory.chmod(0o755)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.directory / "output.log"

    def url(self, tls: bool) -> str:
        return f"https://127.0.0.1:{self.https_port}" if tls else f"http://127.0.0.1:{self.http_port}"

    def public_port(self, tls: bool) -> int:
        return self.https_port if tls else self.http_port

    def site(self) -> str:
        """The configuration of the flavour, with the test's ports, service and certificate."""
        if self.flavour == "copied":
            return self.copied()
        source = EXAMPLES / self.examples[self.flavour]
        return self.adapt(source.read_text(encoding="utf-8"), str(source))

    def adapt(self, text: str, source: str) -> str:
        raise NotImplementedError

    def copied(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def write_config(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.write_config()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            for port in (self.http_port, self.https_port):
                wait_port(port, timeout=30)
        except TimeoutError:
            output = self.output()
            self.close()
            raise RuntimeError(f"{self.name} did not start:\n{output}") from None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited:\n{self.output()}")

    def output(self) -> str:
        parts = []
        for path in sorted(self.directory.glob("*.log")):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def close(self) -> None:
        stop_process(self.process)
        self.process = None
        for port in (self.http_port, self.https_port):
            with contextlib.suppress(TimeoutError):
                wait_port_closed(port, timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)


class Nginx(Proxy):
    name = "nginx"
    binary_name = "nginx"

    examples: ClassVar[dict[str, str]] = {"recommended": "nginx.conf", "forwarded": "nginx-forwarded.conf"}

    def adapt(self, text: str, source: str) -> str:
        return _replace(
            text,
            {
                "listen 80;": f"listen 127.0.0.1:{self.http_port};",
                "listen 443 ssl;": f"listen 127.0.0.1:{self.https_port} ssl;",
                EXAMPLE_SERVICE: f"127.0.0.1:{self.service_port}",
                EXAMPLE_CERT: str(self.certificate.cert),
                EXAMPLE_KEY: str(self.certificate.key),
            },
            source,
        )

    def copied(self) -> str:
        snippet = """
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;"""
        return f"""
server {{
    listen 127.0.0.1:{self.http_port};
    listen 127.0.0.1:{self.https_port} ssl;
    ssl_certificate {self.certificate.cert};
    ssl_certificate_key {self.certificate.key};

    location / {{
        proxy_pass http://127.0.0.1:{self.service_port};{snippet}
    }}
    location {PREFIX}/ {{
        proxy_pass http://127.0.0.1:{self.service_port}/;{snippet}
    }}
}}
"""

    def write_config(self) -> None:
        directory = self.directory
        (directory / "site.conf").write_text(self.site(), encoding="utf-8")
        user = "user root;" if os.geteuid() == 0 else ""
        (directory / "nginx.conf").write_text(
            f"""
daemon off;
master_process on;
worker_processes 1;
{user}
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 128; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/site.conf;
}}
""",
            encoding="utf-8",
        )

    def command(self) -> list[str]:
        return [
            self.binary,
            "-p",
            str(self.directory),
            "-e",
            str(self.directory / "error.log"),
            "-c",
            str(self.directory / "nginx.conf"),
        ]


class Apache(Proxy):
    name = "apache"
    binary_name = "apache2"
    modules: ClassVar[tuple[str, ...]] = (
        "mpm_event",
        "authz_core",
        "headers",
        "proxy",
        "proxy_http",
        "socache_shmcb",
        "ssl",
    )

    examples: ClassVar[dict[str, str]] = {"recommended": "apache.conf", "forwarded": "apache-forwarded.conf"}

    def adapt(self, text: str, source: str) -> str:
        return _replace(
            text,
            {
                "<VirtualHost *:80>": f"<VirtualHost 127.0.0.1:{self.http_port}>",
                "<VirtualHost *:443>": f"<VirtualHost 127.0.0.1:{self.https_port}>",
                EXAMPLE_SERVICE: f"127.0.0.1:{self.service_port}",
                EXAMPLE_CERT: str(self.certificate.cert),
                EXAMPLE_KEY: str(self.certificate.key),
            },
            source,
        )

    def copied(self) -> str:
        service = f"http://127.0.0.1:{self.service_port}/"
        proxy = f"""
    ProxyPass "{PREFIX}/" "{service}"
    ProxyPassReverse "{PREFIX}/" "{service}"
    ProxyPass "/" "{service}"
    ProxyPassReverse "/" "{service}"
"""
        return f"""
<VirtualHost 127.0.0.1:{self.http_port}>{proxy}</VirtualHost>
<VirtualHost 127.0.0.1:{self.https_port}>
    SSLEngine on
    SSLCertificateFile {self.certificate.cert}
    SSLCertificateKeyFile {self.certificate.key}
{proxy}</VirtualHost>
"""

    def write_config(self) -> None:
        directory = self.directory
        (directory / "site.conf").write_text(self.site(), encoding="utf-8")
        modules = "\n".join(
            f"LoadModule {module}_module {APACHE_MODULES / f'mod_{module}.so'}" for module in self.modules
        )
        user = ""
        if os.geteuid() == 0:
            account = "www-data"
            try:
                pwd.getpwnam(account)
            except KeyError:
                account = "nobody"
            user = f"User {account}\nGroup #{pwd.getpwnam(account).pw_gid}"
        (directory / "apache2.conf").write_text(
            f"""
ServerRoot {directory}
ServerName localhost
PidFile {directory}/apache2.pid
ErrorLog {directory}/error.log
LogLevel warn
Mutex file:{directory} default
DefaultRuntimeDir {directory}
{modules}
{user}
StartServers 1
ServerLimit 1
ThreadsPerChild 16
MaxRequestWorkers 16
MinSpareThreads 1
MaxSpareThreads 16
Listen 127.0.0.1:{self.http_port}
Listen 127.0.0.1:{self.https_port}
Include {directory}/site.conf
""",
            encoding="utf-8",
        )

    def command(self) -> list[str]:
        return [self.binary, "-f", str(self.directory / "apache2.conf"), "-DFOREGROUND"]


class HAProxy(Proxy):
    name = "haproxy"
    binary_name = "haproxy"

    examples: ClassVar[dict[str, str]] = {"recommended": "haproxy.cfg", "forwarded": "haproxy-forwarded.cfg"}

    def adapt(self, text: str, source: str) -> str:
        return _replace(
            text,
            {
                "bind :80\n": f"bind 127.0.0.1:{self.http_port}\n",
                f"bind :443 ssl crt {EXAMPLE_PEM}": (
                    f"bind 127.0.0.1:{self.https_port} ssl crt {self.certificate.combined}"
                ),
                EXAMPLE_SERVICE: f"127.0.0.1:{self.service_port}",
            },
            source,
        )

    def copied(self) -> str:
        return f"""
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend public
    bind 127.0.0.1:{self.http_port}
    bind 127.0.0.1:{self.https_port} ssl crt {self.certificate.combined}
    option forwardfor
    http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
    http-request replace-path {PREFIX}(/.*) \\1 if {{ path_beg {PREFIX}/ }}
    default_backend service

backend service
    server app 127.0.0.1:{self.service_port}
"""

    def write_config(self) -> None:
        (self.directory / "haproxy.cfg").write_text(self.site(), encoding="utf-8")

    def command(self) -> list[str]:
        return [self.binary, "-db", "-f", str(self.directory / "haproxy.cfg")]


PROXIES: dict[str, type[Proxy]] = {proxy.name: proxy for proxy in (Nginx, Apache, HAProxy)}
