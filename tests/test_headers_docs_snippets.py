"""The Python examples of docs/headers.md, extracted from the page and run as they are written.

All ``python`` blocks run in order in one namespace (a block may use what an earlier one defined, as a reader
would), with ``__file__`` in a temporary folder whose ``templates/index.html.jinja2`` is the page's ``html``
block. Then each example is checked for what the text next to it promises.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import starlette
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from starlette.testclient import TestClient

from c2casgiutils import headers
from tests.servers import free_port, wait_port

PAGE = Path(__file__).parent.parent / "docs" / "headers.md"
BLOCK_RE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)
PUBLIC = {"host": "service.example.com"}


def blocks(language: str) -> list[str]:
    found = []
    for match in BLOCK_RE.finditer(PAGE.read_text(encoding="utf-8")):
        if match.group(2) == language:
            indent = len(match.group(1))
            found.append("".join(line[indent:] for line in match.group(3).splitlines(keepends=True)))
    return found


def block_with(text: str) -> str:
    (block,) = [block for block in blocks("python") if text in block]
    return block


def run(source: str, tmp_path: Path, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one example as a module in ``tmp_path`` (with the page's template) and return its namespace."""
    templates = tmp_path / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "index.html.jinja2").write_text(blocks("html")[0], encoding="utf-8")
    namespace = {"__name__": "docs_example", "__file__": str(tmp_path / "example.py"), **(namespace or {})}
    exec(compile(source, f"{PAGE.name} example", "exec"), namespace)  # the page's own examples
    return namespace


def test_the_page_has_the_examples_this_test_checks() -> None:
    assert len(blocks("python")) >= 5
    assert len(blocks("html")) == 1


def test_every_example_runs_in_order(tmp_path: Path) -> None:
    namespace: dict[str, Any] = {}
    for source in blocks("python"):
        namespace = run(source, tmp_path, namespace)
    assert isinstance(namespace["app"], FastAPI)


def app_client(app: FastAPI) -> TestClient:
    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return TestClient(app, base_url="https://service.example.com")


@pytest.mark.parametrize("http_mode", [False, True])
def test_the_opening_example_sends_hsts_in_production_only(settings: Any, tmp_path: Path, http_mode: bool) -> None:
    settings.http = http_mode
    namespace = run(block_with("app = FastAPI()\napp.add_middleware(headers.ArmorHeaderMiddleware)"), tmp_path)
    response = app_client(namespace["app"]).get("/hello", headers=PUBLIC)
    assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert ("strict-transport-security" in response.headers) is not http_mode


@pytest.mark.parametrize("http_mode", [False, True])
def test_the_corrected_hsts_entry_sends_hsts_in_production_only(settings: Any, tmp_path: Path, http_mode: bool) -> None:
    """The specification's entry, with its condition the right way round, as the page shows it."""
    settings.http = http_mode
    from c2casgiutils import config  # noqa: PLC0415

    source = block_with('"Strict-Transport-Security": None} if config.settings.http else {}')
    namespace = run(source, tmp_path, {"app": FastAPI(), "headers": headers, "config": config})
    response = app_client(namespace["app"]).get("/hello", headers=PUBLIC)
    assert ("strict-transport-security" in response.headers) is not http_mode


def test_the_worker_override_gives_the_worker_a_policy_that_lets_it_fetch(tmp_path: Path) -> None:
    namespace = run(block_with('"worker_csp"'), tmp_path)
    app = FastAPI()

    @app.get("/static/worker.js")
    async def worker() -> PlainTextResponse:
        return PlainTextResponse("fetch('/x')", media_type="text/javascript")

    app.add_middleware(headers.ArmorHeaderMiddleware, headers_config=namespace["headers_config"])
    test_client = app_client(app)
    assert test_client.get("/static/worker.js", headers=PUBLIC).headers["content-security-policy"] == (
        "default-src 'self'; frame-ancestors 'none'"
    )
    assert test_client.get("/hello", headers=PUBLIC).headers["content-security-policy"].startswith("default-src 'none'")


def test_the_self_hosted_docs_rule_allows_the_inline_script_by_hash(tmp_path: Path) -> None:
    namespace = run(block_with("headers.CSP_SCRIPT_HASHES"), tmp_path, {"headers": headers})
    app = FastAPI()
    app.add_middleware(headers.ArmorHeaderMiddleware, headers_config=namespace["headers_config"])
    response = app_client(app).get("/docs", headers=PUBLIC)
    script_src = next(part for part in response.headers["content-security-policy"].split("; ") if "script-src" in part)
    assert re.fullmatch(r"script-src 'self' 'sha256-[A-Za-z0-9+/]{43}='", script_src), script_src


def test_the_nonce_template_example_renders_the_nonce_of_the_csp(tmp_path: Path) -> None:
    pytest.importorskip("jinja2")
    namespace = run(block_with('"my_page"'), tmp_path)
    namespace = run(block_with("templates.TemplateResponse(request,"), tmp_path, namespace)
    with TestClient(namespace["app"]) as client:
        response = client.get("/my-page")
        other = client.get("/my-page")
    assert response.status_code == 200, response.text
    nonce = response.headers["content-security-policy"].split("'nonce-", 1)[1].split("'", 1)[0]
    assert response.headers["content-security-policy"] == (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'"
    )
    assert f'<script nonce="{nonce}">' in response.text
    assert f'<style nonce="{nonce}">' in response.text
    assert nonce not in other.text


def test_the_specifications_template_call_is_the_one_that_fails(tmp_path: Path) -> None:
    """Why the page shows ``TemplateResponse(request, name, context)``: the other form raises on Starlette 1.x."""
    pytest.importorskip("jinja2")
    if int(starlette.__version__.split(".")[0]) < 1:
        pytest.skip(f"Starlette {starlette.__version__} still takes the older form (with a deprecation warning)")
    namespace = run(block_with('"my_page"'), tmp_path)
    source = block_with("templates.TemplateResponse(request,").replace(
        'templates.TemplateResponse(request, "index.html.jinja2", {"nonce": getattr(request.state, "nonce", "")})',
        'templates.TemplateResponse("index.html.jinja2", {"request": request, "nonce": request.state.nonce})',
    )
    namespace = run(source, tmp_path, namespace)
    with TestClient(namespace["app"]) as client, pytest.raises(TypeError, match="unhashable type: 'dict'"):
        client.get("/my-page")


SERVER_APP = """
from fastapi import FastAPI

from c2casgiutils import headers

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


app.add_middleware(headers.ArmorHeaderMiddleware, headers_config={"no_server": {"headers": {"Server": None}}})
"""


@pytest.mark.parametrize("flag", [[], ["--no-server-header"]])
def test_only_uvicorns_flag_removes_its_server_header(tmp_path: Path, flag: list[str]) -> None:
    """What the page says: a ``"Server": None`` rule cannot remove uvicorn's header, ``--no-server-header`` does."""
    (tmp_path / "server_app.py").write_text(SERVER_APP, encoding="utf-8")
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "server_app:app", "--host", "127.0.0.1", "--port", str(port), *flag]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        wait_port(port, timeout=30)
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
    finally:
        process.terminate()
        process.wait(15)
    assert response.json() == {"hello": "world"}
    assert response.headers.get("server") == (None if flag else "uvicorn")


@pytest.mark.parametrize("path", ["scripts/demo", "scaffold/{{cookiecutter.project_slug}}/Dockerfile"])
def test_the_demo_and_the_scaffold_run_uvicorn_without_its_server_header(path: str) -> None:
    text = (PAGE.parent.parent / path).read_text(encoding="utf-8")
    # Each uvicorn command: from "uvicorn " to the end of the shell array or of the exec-form string.
    commands = [command for command in re.findall(r"uvicorn [^)\]]*", text) if "--port" in command]
    assert commands, path
    assert all("--no-server-header" in command for command in commands), commands
