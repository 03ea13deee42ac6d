"""The cookiecutter scaffold: generation, the slug check, and (slow) a generated service end to end.

The fast tests generate every option combination with the real cookiecutter and lint the result. The slow
ones install this checkout and two generated projects into a fresh virtual environment (no system site
packages), run the projects' own tests and ruff, migrate real PostgreSQL, and run the services with
uvicorn against real Redis.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

import c2casgiutils
from tests.servers import PostgresServer, RedisServer, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
SCAFFOLD = REPO_ROOT / "scaffold"
HOST_BIN = Path(sys.executable).parent
SLUG = "demo_svc"
PREFIX = SLUG.upper() + "__"
DATABASE_FILES = ["alembic.ini", f"{SLUG}/alembic", f"{SLUG}/db.py", f"{SLUG}/models.py", "tests/test_items.py"]
# Variables of the machine that would change how a generated service behaves: never inherited.
LEAKING_PREFIXES = ("C2C__", PREFIX, "PROMETHEUS_MULTIPROC_DIR", "SENTRY_DSN", "PYTHONPATH", "PYTHONHOME")


def clean_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(LEAKING_PREFIXES)}
    env.pop("VIRTUAL_ENV", None)
    # scripts/test exports the locked set as pip constraints: the generated projects install the same versions.
    if os.environ.get("C2C_TEST_PIP_CONSTRAINT"):
        env["PIP_CONSTRAINT"] = os.environ["C2C_TEST_PIP_CONSTRAINT"]
    env.update(extra)
    return env


def run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run a command; fail with its output when it does not succeed."""
    result = subprocess.run(
        command, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


def cookiecutter(output: Path, *args: str, template: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real cookiecutter command line, with no prompt; its replay files stay out of the home directory."""
    output.mkdir(parents=True, exist_ok=True)
    state = output.parent / f".cookiecutter-{output.name}"
    state.mkdir(exist_ok=True)
    config_file = state / "config.yaml"
    config_file.write_text(
        yaml.safe_dump({"cookiecutters_dir": str(state / "templates"), "replay_dir": str(state / "replay")}),
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "cookiecutter", "--no-input", "--config-file", str(config_file)]
    command += ["--output-dir", str(output), template or str(SCAFFOLD), *args]
    return subprocess.run(command, env=clean_env(), capture_output=True, text=True, timeout=60, check=False)


def generate(
    output: Path, *, database: bool, redis: bool, from_repository: bool = False, requirement: str | None = None
) -> Path:
    """Generate the demo project, from ``scaffold/`` or as ``cookiecutter <checkout> --directory scaffold``."""
    args = [f"project_slug={SLUG}", f"database={'yes' if database else 'no'}", f"redis={'yes' if redis else 'no'}"]
    if requirement is not None:
        args.append(f"c2casgiutils_requirement={requirement}")
    if from_repository:
        result = cookiecutter(output, *args, "--directory", "scaffold", template=str(REPO_ROOT))
    else:
        result = cookiecutter(output, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return output / SLUG


# --------------------------------------------------------------------------------------------------
# Fast: generation and the pre-generation hook
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slug", "reason"),
    [
        ("My-Service", "lowercase letters"),
        ("1service", "start with a lowercase letter"),
        ("my__service", "double underscore"),
        ("service_", "trailing"),
        ("class", "Python keyword"),
        ("match", "Python keyword"),
        ("json", "standard library"),
        ("fastapi", "package the generated service uses"),
        ("a" * 41, "limit is 40"),
        ('bad"quote', "lowercase letters"),
    ],
)
def test_invalid_slug_is_refused_with_a_clear_message(tmp_path: Path, slug: str, reason: str) -> None:
    result = cookiecutter(tmp_path / "out", f"project_slug={slug}")
    assert result.returncode != 0
    assert f"Invalid project_slug {slug!r}" in result.stderr
    assert reason in result.stderr
    assert list((tmp_path / "out").iterdir()) == [], "nothing is generated for a refused slug"


def test_description_with_quotes_is_refused(tmp_path: Path) -> None:
    result = cookiecutter(tmp_path / "out", f"project_slug={SLUG}", 'project_description=say "hi"')
    assert result.returncode != 0
    assert "Invalid project_description" in result.stderr
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    "requirement", ["other-package>=1.0", 'c2casgiutils[all]>="1.0"', "c2casgiutils @", "c2casgiutils[all] >= 1\\"]
)
def test_invalid_c2casgiutils_requirement_is_refused(tmp_path: Path, requirement: str) -> None:
    result = cookiecutter(tmp_path / "out", f"project_slug={SLUG}", f"c2casgiutils_requirement={requirement}")
    assert result.returncode != 0
    assert f"Invalid c2casgiutils_requirement {requirement!r}" in result.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_direct_reference_requirement_goes_into_a_buildable_project(tmp_path: Path) -> None:
    """``c2casgiutils_requirement`` may name a wheel file: hatchling builds the project with that reference."""
    requirement = "c2casgiutils[all] @ file:///somewhere/dist/c2casgiutils-1.0.0-py3-none-any.whl"
    project = generate(tmp_path / "out", database=False, redis=False, requirement=requirement)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["dependencies"][0] == requirement
    assert pyproject["tool"]["hatch"]["metadata"]["allow-direct-references"] is True
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"), "."],
        cwd=project, timeout=120)
    (built,) = (tmp_path / "dist").glob(f"{SLUG}-0.1.0-*.whl")
    with zipfile.ZipFile(built) as archive:
        metadata = archive.read(f"{SLUG}-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: c2casgiutils[all] @ file:///somewhere/dist/c2casgiutils-1.0.0-py3-none-any.whl" in metadata


@pytest.mark.parametrize("database", [True, False], ids=["database", "no-database"])
@pytest.mark.parametrize("redis", [True, False], ids=["redis", "no-redis"])
def test_generated_project_is_complete_and_lint_clean(tmp_path: Path, database: bool, redis: bool) -> None:
    project = generate(tmp_path / "out", database=database, redis=redis, from_repository=database and redis)

    for name in ["Dockerfile", "docker-compose.yaml", "logging.yaml", ".gitignore", "README.md", "pyproject.toml"]:
        assert (project / name).is_file(), name
    for name in ["main.py", "config.py", "api.py", "checks.py", "logging_format.py"]:
        assert (project / SLUG / name).is_file(), name
    for name in DATABASE_FILES:
        assert (project / name).exists() == database, name
    if database:
        assert list((project / SLUG / "alembic" / "versions").glob("*.py"))

    compose = yaml.safe_load((project / "docker-compose.yaml").read_text(encoding="utf-8"))
    assert "app" in compose["services"]
    assert ("redis" in compose["services"]) == redis
    assert ("postgres" in compose["services"]) == database
    app_env = compose["services"]["app"]["environment"]
    assert ("C2C__REDIS__URL" in app_env) == redis
    assert (f"{PREFIX}DATABASE__URL" in app_env) == database

    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert f"c2casgiutils[all]>={c2casgiutils.__version__}" in pyproject["project"]["dependencies"]
    assert {"pytest", "httpx2", "ruff", "mypy"} <= {
        dep.split(">")[0] for dep in pyproject["project"]["optional-dependencies"]["dev"]
    }

    logging_config = yaml.safe_load((project / "logging.yaml").read_text(encoding="utf-8"))
    assert logging_config["formatters"]["console"]["()"] == f"{SLUG}.logging_format.console_formatter"

    dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
    assert "-slim" in dockerfile.splitlines()[0]
    assert "\nUSER app\n" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert "--proxy-headers" in dockerfile
    assert '--forwarded-allow-ips=\\"$FORWARDED_ALLOW_IPS\\"' in dockerfile
    assert '--timeout-graceful-shutdown=\\"$GRACEFUL_SHUTDOWN_TIMEOUT\\"' in dockerfile
    assert "C2C__SHUTDOWN__DRAIN_DELAY=" in dockerfile

    main = (project / SLUG / "main.py").read_text(encoding="utf-8")
    assert ("health_checks.Redis(" in main) == redis
    assert ("health_checks.Alembic(" in main) == database
    assert "{{" not in main
    assert "{%" not in main

    run([str(HOST_BIN / "ruff"), "check", "--no-cache", "."], cwd=project)
    run([str(HOST_BIN / "ruff"), "format", "--no-cache", "--check", "."], cwd=project)


DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _dockerfile_env(dockerfile: str) -> dict[str, str]:
    """The ENV variables of the Dockerfile (``ENV A=1 \\`` continuation lines joined)."""
    text = dockerfile.replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            found.update(item.split("=", 1) for item in line[4:].split() if "=" in item)
    return found


@pytest.mark.parametrize("slug", [SLUG, "svc"])
def test_kubernetes_manifests_are_valid_and_keep_the_drain_within_the_grace_period(tmp_path: Path, slug: str) -> None:
    """The rendered manifests parse as YAML and have what Kubernetes requires and the rolling update needs."""
    result = cookiecutter(tmp_path / "out", f"project_slug={slug}")
    assert result.returncode == 0, result.stderr
    project = tmp_path / "out" / slug
    documents = {}
    for path in sorted((project / "k8s").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            documents[document["kind"]] = document
    assert set(documents) == {"Deployment", "Service"}
    name = slug.replace("_", "-")
    for document in documents.values():
        assert document["metadata"]["name"] == name
        assert DNS_LABEL.fullmatch(document["metadata"]["name"])
    deployment, service = documents["Deployment"], documents["Service"]
    assert deployment["apiVersion"] == "apps/v1"
    assert service["apiVersion"] == "v1"

    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = pod["containers"]
    assert container["name"]
    assert container["image"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8080, "metrics": 9000}  # what the Dockerfile exposes
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= set(ports)

    probes = {kind: container[f"{kind}Probe"] for kind in ("startup", "readiness", "liveness")}
    for probe in probes.values():
        assert probe["httpGet"]["port"] in ports
        assert probe["timeoutSeconds"] >= 1
    assert probes["startup"]["httpGet"]["path"] == "/c2c/health_checks?tags=liveness"
    assert probes["readiness"]["httpGet"]["path"] == "/c2c/health_checks?tags=readiness"
    assert probes["liveness"]["httpGet"]["path"] == "/c2c/health_checks?tags=liveness"
    # The access log leaves out the probes' successes: the probes' paths, and nothing else.
    image_env = _dockerfile_env((project / "Dockerfile").read_text(encoding="utf-8"))
    probe_paths = {probe["httpGet"]["path"] for probe in probes.values()}
    assert set(image_env["C2C__ACCESS_LOG__SKIP_PATHS"].split(",")) == probe_paths

    # The grace period covers the drain and uvicorn's graceful shutdown, with the image's defaults too.
    env = {item["name"]: item["value"] for item in container["env"]}
    for values in (env, image_env):
        drain = float(values["C2C__SHUTDOWN__DRAIN_DELAY"])
        graceful = float(values["GRACEFUL_SHUTDOWN_TIMEOUT"])
        assert drain > 0
        assert pod["terminationGracePeriodSeconds"] > drain + graceful
    # The drain outlasts the readiness probe's detection (period x failures), else new requests still come.
    detection = probes["readiness"]["periodSeconds"] * probes["readiness"]["failureThreshold"]
    assert float(env["C2C__SHUTDOWN__DRAIN_DELAY"]) > detection
    # The multiprocess directory is on a writable volume (the root file system is read-only), not the mount
    # point itself: the Dockerfile's entry point removes and recreates it.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    multiproc = image_env["PROMETHEUS_MULTIPROC_DIR"]
    assert multiproc not in mounts
    assert any(multiproc.startswith(mount.rstrip("/") + "/") for mount in mounts)


def test_scaffold_requires_the_version_it_comes_with() -> None:
    """The generated project needs this version's API: bump ``_c2casgiutils_version`` with the package."""
    template = json.loads((SCAFFOLD / "cookiecutter.json").read_text(encoding="utf-8"))
    assert template["_c2casgiutils_version"] == c2casgiutils.__version__


# --------------------------------------------------------------------------------------------------
# Slow: a fresh virtual environment, the generated projects' own tests, real services
# --------------------------------------------------------------------------------------------------


def readme_block(project: Path, heading: str, first_line: str) -> list[str]:
    """The command lines of the ``bash`` block that starts with ``first_line`` under ``## heading``."""
    readme = (project / "README.md").read_text(encoding="utf-8")
    section = readme.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = [block.strip().splitlines() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)]
    (block,) = [lines for lines in blocks if lines[0].startswith(first_line)]
    return block


def run_readme_line(line: str, project: Path, timeout: float = 600) -> str:
    """One command line of the generated README, verbatim, in the project, with nothing activated."""
    return run(["bash", "-c", f"set -euo pipefail\n{line}"], cwd=project, timeout=timeout)


@dataclass
class Generated:
    full: Path  # database and Redis on
    minimal: Path  # database and Redis off
    wheel: Path  # c2casgiutils built from this checkout, the projects' c2casgiutils_requirement

    @staticmethod
    def bin(project: Path) -> Path:
        """The project's own virtual environment, made by its README's commands."""
        return project / ".venv" / "bin"

    @property
    def venv_bin(self) -> Path:
        return self.bin(self.full)

    def env(self, project: Path | None = None, **extra: str) -> dict[str, str]:
        venv_bin = self.bin(project or self.full)
        return clean_env(
            PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(venv_bin.parent), **extra
        )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """c2casgiutils built from this checkout, as ``scripts/build`` does (``python -m build``)."""
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO_ROOT)], cwd=out,
        timeout=300)
    (built,) = out.glob(f"c2casgiutils-{c2casgiutils.__version__}-py3-none-any.whl")
    return built


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Generated:
    """Both variants generated with ``c2casgiutils_requirement`` pointing at the wheel, each set up by the
    commands of its own README (venv, install with the dev extra, migrations), verbatim, one after the other.

    Nothing is installed by hand: the README's ``pip install -e '.[dev]'`` brings c2casgiutils from the
    wheel and everything else from the package index (or pip's cache).
    """
    base = tmp_path_factory.mktemp("scaffold")
    requirement = f"c2casgiutils[all] @ {wheel.as_uri()}"
    full = generate(base / "full", database=True, redis=True, from_repository=True, requirement=requirement)
    minimal = generate(base / "minimal", database=False, redis=False, requirement=requirement)
    for project in (full, minimal):
        setup = readme_block(project, "Run", "python3 -m venv")
        assert "uvicorn" in setup[-1], setup
        for line in setup[:-1]:  # the last one serves: test_*_runs_on_embedded_defaults run it
            run_readme_line(line, project)
    return Generated(full=full, minimal=minimal, wheel=wheel)


@dataclass
class Service:
    process: subprocess.Popen[str]
    port: int
    metrics_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> bool:
        """SIGTERM the server and its workers, as an orchestrator does; True when uvicorn exited cleanly."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        # After a graceful shutdown uvicorn re-raises SIGTERM when it runs one process: that is clean too.
        return self.process.returncode in (0, -signal.SIGTERM)


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator:
    """Start a generated service with uvicorn as the Dockerfile does; every one is stopped at the end."""
    services: list[Service] = []

    def start(generated: Generated, project: Path, *, workers: int = 1, readme: bool = False, **env: str) -> Service:
        """With ``readme``: the README's own uvicorn command instead, verbatim but for its port."""
        port, metrics_port = free_port(), free_port()
        log_path = tmp_path / f"uvicorn-{port}.log"
        command = [
            str(generated.bin(project) / "uvicorn"),
            f"{SLUG}.main:app",
            "--host=127.0.0.1",
            f"--port={port}",
            "--log-config=logging.yaml",
            "--proxy-headers",
            "--forwarded-allow-ips=127.0.0.1",
            f"--workers={workers}",
        ]
        process_env = generated.env(project, C2C__PROMETHEUS__PORT=str(metrics_port), **env)
        if readme:
            line = readme_block(project, "Run", "python3 -m venv")[-1]
            assert " --port 8080 " in line, line
            # A free port instead of 8080, which something else on the machine may hold.
            # bash runs the one command in its place (the stop signal goes to the whole process group anyway).
            command = ["bash", "-c", line.replace(" --port 8080 ", f" --port {port} ")]
            process_env = clean_env(C2C__PROMETHEUS__PORT=str(metrics_port), **env)
        with log_path.open("w", encoding="utf-8") as log:
            process = subprocess.Popen(
                command,
                cwd=project,
                env=process_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        service = Service(process, port, metrics_port, log_path)
        services.append(service)
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"uvicorn exited {process.returncode}:\n{service.logs()}"
            try:
                if httpx.get(f"{service.url}/c2c/health_checks?tags=liveness", timeout=5).status_code == 200:
                    return service
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the service did not answer within 90 s:\n{service.logs()}"
            time.sleep(0.2)

    yield start
    for service in services:
        service.stop()


def dockerfile_healthcheck(project: Path) -> list[str]:
    """The exec-form command of the Dockerfile's HEALTHCHECK (continuation lines joined)."""
    dockerfile = (project / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    line = next(line for line in dockerfile.splitlines() if line.startswith("HEALTHCHECK"))
    return json.loads(line[line.index(" CMD ") + len(" CMD ") :])


def check_names(response: httpx.Response) -> dict[str, int]:
    return {entity["name"]: entity["status_code"] for entity in response.json()["entities"]}


def metrics_text(service: Service) -> str:
    response = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def counter_value(metrics: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (text exposition format)."""
    total = 0.0
    for line in metrics.splitlines():
        if not line.startswith(name + "{"):
            continue
        label_text, value = line[len(name) + 1 :].rsplit("} ", 1)
        if all(f'{key}="{expected}"' in label_text for key, expected in labels.items()):
            total += float(value)
    return total


def scraped_requests(service: Service, handler: str, expected: float) -> float:
    """``http_requests_total`` of ``handler`` from the metrics port, once it reaches ``expected`` (or 10 s).

    The instrumentator counts a request when its response is finished, which may be just after the client
    got it: the scrape is repeated for a moment instead of racing it.
    """
    deadline = time.monotonic() + 10
    while True:
        value = counter_value(metrics_text(service), "http_requests_total", handler=handler, method="GET")
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["full", "minimal"])
def test_generated_project_passes_its_own_tests_ruff_and_mypy(generated: Generated, variant: str) -> None:
    """The README's "Test and lint" commands, verbatim, in the environment its "Run" commands made."""
    project = getattr(generated, variant)
    pytest_line, ruff_line, mypy_line = readme_block(project, "Test and lint", ".venv/bin/pytest")
    assert pytest_line == ".venv/bin/pytest"
    output = run_readme_line(pytest_line, project, timeout=300)
    summary = output.strip().splitlines()[-1]
    # None failed, skipped or in error (a warning from a newer dependency is not the scaffold's failure).
    assert re.fullmatch(r"=* ?\d+ passed(, \d+ warnings?)? in [\d.]+s( \([\d:]+\))? ?=*", summary), summary
    assert ruff_line == ".venv/bin/ruff check . && .venv/bin/ruff format --check ."
    run_readme_line(ruff_line, project)
    assert mypy_line == ".venv/bin/mypy"
    mypy_output = run_readme_line(mypy_line, project, timeout=300)
    assert mypy_output.startswith("Success: no issues found"), mypy_output
    # c2casgiutils came from the wheel of this checkout, as c2casgiutils_requirement says.
    direct_url = run(
        [str(generated.bin(project) / "python"), "-c",
         "import importlib.metadata as m; print(m.distribution('c2casgiutils').read_text('direct_url.json'))"],
        cwd=project,
    )
    assert json.loads(direct_url)["url"] == generated.wheel.as_uri()


@pytest.mark.slow
def test_full_service_on_postgresql_and_redis(
    generated: Generated, postgres_server: PostgresServer, own_redis_server: RedisServer, start_service, tmp_path: Path
) -> None:
    database = f"scaffold_{uuid.uuid4().hex[:8]}"
    postgres_server.psql(f"CREATE DATABASE {database}", database="postgres")
    database_url = postgres_server.url(database=database)
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    skip_paths = _dockerfile_env((generated.full / "Dockerfile").read_text(encoding="utf-8"))
    service = start_service(
        generated,
        generated.full,
        workers=2,
        C2C__REDIS__URL=own_redis_server.url,
        C2C__PROXY_HEADERS__TYPE="x-forwarded",
        C2C__ACCESS_LOG__SKIP_PATHS=skip_paths["C2C__ACCESS_LOG__SKIP_PATHS"],  # as the image does
        PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir),
        **{f"{PREFIX}DATABASE__URL": database_url, f"{PREFIX}LOG_FORMAT": "json"},
    )

    # Not migrated yet: the Alembic check keeps the service out of the load balancer.
    response = httpx.get(f"{service.url}/c2c/health_checks", params={"tags": "readiness"}, timeout=30)
    assert response.status_code >= 500, response.text
    assert check_names(response)["Alembic"] >= 500

    run(
        [str(generated.venv_bin / "alembic"), "upgrade", "head"],
        cwd=generated.full,
        env=generated.env(**{f"{PREFIX}DATABASE__URL": database_url}),
    )
    assert postgres_server.psql("SELECT version_num FROM alembic_version", database=database).strip() == "0001"

    response = httpx.get(f"{service.url}/c2c/health_checks", params={"tags": "readiness"}, timeout=30)
    assert response.status_code == 200, response.text
    assert check_names(response) == {
        "Liveness": 200, "ReadinessState": 200, "Redis": 200, "SQLAlchemy": 200, "Alembic": 200
    }

    created = httpx.post(f"{service.url}/api/items", json={"name": "in postgres"}, timeout=10)
    assert created.status_code == 201, created.text
    assert postgres_server.psql("SELECT name FROM item", database=database).strip() == "in postgres"

    # ForwardedHeadersMiddleware is wired: the proxy's host replaces 127.0.0.1, which gets no HSTS.
    direct = httpx.get(f"{service.url}/api/hello", timeout=10)
    assert "Strict-Transport-Security" not in direct.headers
    proxied = httpx.get(
        f"{service.url}/api/hello",
        headers={"X-Forwarded-Host": "svc.example.com", "X-Forwarded-Proto": "https"},
        timeout=10,
    )
    assert "Strict-Transport-Security" in proxied.headers

    # Both workers answer a broadcast through Redis (the second may still be subscribing).
    deadline = time.monotonic() + 30
    while True:
        answers = httpx.get(f"{service.url}/api/processes", timeout=30).json()
        pids = {answer["payload"]["pid"] for answer in answers if "payload" in answer}
        if len(pids) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(pids) == 2, answers

    hello_count = 8
    for _ in range(hello_count):
        assert httpx.get(f"{service.url}/api/hello", timeout=10).status_code == 200
    # Two workers, one metrics port: the counts of both are summed (multiprocess mode).
    # (+ 2: the requests of the proxy-header check above)
    assert scraped_requests(service, "/api/hello", hello_count + 2) == hello_count + 2

    own_redis_server.stop()
    response = httpx.get(f"{service.url}/c2c/health_checks", params={"tags": "liveness"}, timeout=30)
    assert response.status_code == 200, response.text
    assert check_names(response) == {"Liveness": 200, "LivenessState": 200}
    response = httpx.get(f"{service.url}/c2c/health_checks", params={"tags": "readiness"}, timeout=30)
    assert response.status_code >= 500
    assert check_names(response)["Redis"] >= 500
    assert httpx.get(f"{service.url}/api/processes", timeout=30).status_code == 503

    # logging.yaml with LOG_FORMAT=json: the service's log lines are JSON objects.
    assert service.stop(), service.logs()
    lines = service.logs().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]  # every line is one JSON object
    assert any(str(record.get("logger")).startswith(SLUG) for record in records), service.logs()
    assert sum(record["message"] == "Application shutdown complete." for record in records) == 2  # both workers
    # The access log: the readiness probe's successes left out, its failures (Redis stopped) and the rest kept.
    access = [record["message"] for record in records if record.get("logger") == "uvicorn.access"]
    assert not [line for line in access if '/c2c/health_checks?tags=readiness HTTP/1.1" 200' in line], access
    assert [line for line in access if re.search(r'/c2c/health_checks\?tags=readiness HTTP/1.1" 5\d\d', line)], access
    assert [line for line in access if '/api/hello HTTP/1.1" 200' in line], access
    assert not [record for record in records if "exception" in record], service.logs()


@pytest.mark.slow
def test_autogenerated_migration_applies_and_passes_the_lint(generated: Generated, tmp_path: Path) -> None:
    """The README's workflow: change a model, ``alembic revision --autogenerate``, upgrade, lint."""
    project = tmp_path / SLUG
    shutil.copytree(
        generated.full, project, ignore=shutil.ignore_patterns(".venv", "*.db", "__pycache__", ".mypy_cache")
    )
    with (project / SLUG / "models.py").open("a", encoding="utf-8") as models:
        models.write(
            '\n\nclass Tag(Base):\n    """A tag."""\n\n    __tablename__ = "tag"\n\n'
            "    id: Mapped[int] = mapped_column(primary_key=True)\n"
            "    label: Mapped[str] = mapped_column(String(50))\n"
        )
    env = generated.env(**{f"{PREFIX}DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/autogenerate.db"})
    # The copy is not the installed editable project: it must import its own package.
    env["PYTHONPATH"] = str(project)
    alembic = str(generated.venv_bin / "alembic")
    run([alembic, "upgrade", "head"], cwd=project, env=env)
    run([alembic, "revision", "--autogenerate", "-m", "add tag"], cwd=project, env=env)
    (migration,) = (project / SLUG / "alembic" / "versions").glob("*_add_tag.py")
    assert 'op.create_table(\n        "tag",' in migration.read_text(encoding="utf-8")  # formatted by the hook
    run([alembic, "upgrade", "head"], cwd=project, env=env)
    run([str(generated.venv_bin / "ruff"), "check", "--no-cache", "."], cwd=project, env=env)
    run([str(generated.venv_bin / "ruff"), "format", "--no-cache", "--check", "."], cwd=project, env=env)


@pytest.mark.slow
def test_full_service_runs_on_embedded_defaults(generated: Generated, start_service) -> None:
    """The README's commands: migrated by them on the default SQLite file, served by its uvicorn command.

    No Redis; only the metrics port is set, to a free one.
    """
    assert (generated.full / f"{SLUG}.db").is_file()  # README's `alembic upgrade head` (the fixture)
    service = start_service(generated, generated.full, readme=True)

    hello = httpx.get(f"{service.url}/api/hello", timeout=10)
    assert hello.status_code == 200, hello.text
    assert "Strict-Transport-Security" not in hello.headers  # C2C__HTTP=true
    assert scraped_requests(service, "/api/hello", 1) == 1

    response = httpx.get(f"{service.url}/c2c/health_checks", params={"tags": "readiness"}, timeout=30)
    assert response.status_code == 200, response.text
    assert check_names(response) == {"Liveness": 200, "ReadinessState": 200, "SQLAlchemy": 200, "Alembic": 200}
    created = httpx.post(f"{service.url}/api/items", json={"name": "in sqlite"}, timeout=10)
    assert created.status_code == 201, created.text
    assert service.stop(), service.logs()
    assert "Traceback" not in service.logs()


@pytest.mark.slow
def test_minimal_service_runs_on_embedded_defaults(generated: Generated, start_service) -> None:
    service = start_service(generated, generated.minimal)

    response = httpx.get(f"{service.url}/c2c/health_checks", params={"tags": "readiness"}, timeout=30)
    assert response.status_code == 200, response.text
    assert check_names(response) == {"Liveness": 200, "ReadinessState": 200}
    response = httpx.get(f"{service.url}/api/hello", params={"name": "you"}, timeout=10)
    assert response.json() == {"message": "Hello you!"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert scraped_requests(service, "/api/hello", 1) == 1
    answers = httpx.get(f"{service.url}/api/processes", timeout=10).json()
    assert [answer["payload"]["pid"] for answer in answers] == [service.process.pid]  # local broadcast

    # The Dockerfile's HEALTHCHECK command, pointed at this service, succeeds.
    healthcheck = dockerfile_healthcheck(generated.minimal)
    healthcheck = [part.replace("127.0.0.1:8080", f"127.0.0.1:{service.port}") for part in healthcheck]
    assert healthcheck[0] == "python"
    minimal_python = str(generated.bin(generated.minimal) / "python")
    run([minimal_python, *healthcheck[1:]], cwd=generated.minimal, env=generated.env(generated.minimal), timeout=30)
    assert service.stop(), service.logs()
    assert not any(line.startswith("{") for line in service.logs().splitlines()), "text logs by default"
    assert "Application shutdown complete." in service.logs()
    assert "Traceback" not in service.logs()
