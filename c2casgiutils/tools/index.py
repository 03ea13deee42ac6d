"""The admin page at ``/c2c/``: login, health checks, logging levels, request headers, debug tools.

The page is plain HTML built from ``templates/`` with ``string.Template`` (no template engine needed),
plus one script and one style sheet served from ``static/`` with subresource integrity: nothing inline,
nothing from a CDN, so it works offline and under ArmorHeaderMiddleware's default
``Content-Security-Policy: default-src 'self'``. Without admin access only the public parts are sent.
"""

from __future__ import annotations

import base64
import hashlib
import html
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from string import Template

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from c2casgiutils import auth, config, lifecycle
from c2casgiutils._version import __version__

router = APIRouter()

_PACKAGE_DIR = Path(__file__).parent.parent
STATIC_DIR = _PACKAGE_DIR / "static"
TEMPLATES_DIR = _PACKAGE_DIR / "templates"


@dataclass(frozen=True)
class StaticAsset:
    """A static file with its integrity hash and a cache-busting URL."""

    url: str
    integrity: str


_ASSETS: dict[tuple[str, float], StaticAsset] = {}
_TEMPLATES: dict[tuple[str, float], Template] = {}


def static_asset(name: str) -> StaticAsset:
    """The URL (relative to the page) and SRI hash of a static file, recomputed when the file changes."""
    path = STATIC_DIR / name
    key = (name, path.stat().st_mtime)
    asset = _ASSETS.get(key)
    if asset is None:
        content = path.read_bytes()
        digest = hashlib.sha384(content).digest()
        version = hashlib.sha256(content).hexdigest()[:12]
        asset = StaticAsset(url=f"static/{name}?v={version}", integrity=f"sha384-{base64.b64encode(digest).decode()}")
        _ASSETS[key] = asset
    return asset


def _template(name: str) -> Template:
    path = TEMPLATES_DIR / name
    key = (name, path.stat().st_mtime)
    template = _TEMPLATES.get(key)
    if template is None:
        template = Template(path.read_text(encoding="utf-8"))
        _TEMPLATES[key] = template
    return template


def _page_path(request: Request) -> str:
    """Path of this page, where login and logout come back to."""
    # Starlette's url.path is the full path, mount prefix included.
    return request.url.path


def _auth_section(is_admin: bool, came_from: str) -> str:
    """Login and logout controls; the user name is filled in by the script from ``auth/status``."""
    back = html.escape(came_from, quote=True)
    if is_admin:
        return (
            '<section id="c2c-auth" class="c2c-card" aria-labelledby="c2c-auth-title">'
            '<h2 id="c2c-auth-title">Session</h2>'
            '<p id="c2c-auth-user" class="c2c-muted">You have admin access.</p>'
            '<form id="c2c-logout-form" action="auth/logout" method="get">'
            f'<input type="hidden" name="came_from" value="{back}">'
            '<button id="c2c-logout" type="submit">Log out</button></form>'
            "</section>"
        )
    parts = [
        '<section id="c2c-auth" class="c2c-card" aria-labelledby="c2c-auth-title">',
        '<h2 id="c2c-auth-title">Log in</h2>',
        '<p class="c2c-muted">The logging, headers and debug tools need admin access.</p>',
    ]
    if auth.secret_enabled():
        parts.append(
            '<form id="c2c-login-form" class="c2c-row" action="auth/login" method="post">'
            f'<input type="hidden" name="came_from" value="{back}">'
            '<label for="c2c-secret">Secret</label>'
            '<input id="c2c-secret" name="secret" type="password" autocomplete="current-password" required>'
            '<button id="c2c-login" type="submit">Log in</button></form>'
            '<p id="c2c-login-error" class="c2c-error" role="alert" hidden></p>'
        )
    if auth.github_enabled():
        github_url = html.escape("auth/github/login?" + urllib.parse.urlencode({"came_from": came_from}), quote=True)
        parts.append(f'<p><a id="c2c-github-login" class="c2c-button" href="{github_url}">Log in with GitHub</a></p>')
    if not auth.secret_enabled() and not auth.github_enabled():
        parts.append(
            '<p class="c2c-error">The admin tools are closed: no login method is configured '
            "(set <code>C2C__AUTH__SECRET</code> or the GitHub OAuth settings).</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _availability(detailed: bool) -> tuple[str, str]:
    """The instance's availability and, when ``detailed``, each worker's (what the readiness probe's payload says)."""
    workers = lifecycle.workers()
    instance = lifecycle.instance_state(workers).value
    if not detailed:
        return instance, f"Instance {instance}"
    own = lifecycle.process_state().value
    details = ", ".join(f"{worker.pid}: {worker.state.value}" for worker in workers)
    return instance, f"Instance {instance} (this process {own}; workers {details or 'none'})"


async def render_index(request: Request) -> str:
    """The admin page for this request: full with admin access, public parts only without."""
    is_admin = await auth.has_admin_access(request)
    css = static_asset("c2c.css")
    js = static_asset("c2c.js")
    admin_sections = (
        _template("admin_sections.html").substitute(
            application_module=html.escape(config.settings.tools.logging.application_module)
        )
        if is_admin
        else ""
    )
    # The pids only where the health checks' payloads are shown too.
    instance_state, availability = _availability(is_admin or config.settings.health_checks.detailed_payloads)
    return _template("index.html").substitute(
        version=html.escape(__version__),
        instance_state=instance_state,
        availability=html.escape(availability),
        is_admin="true" if is_admin else "false",
        login_state="Admin access" if is_admin else "Not logged in with admin access",
        favicon_url=html.escape(static_asset("favicon.svg").url),
        css_url=html.escape(css.url),
        css_integrity=css.integrity,
        js_url=html.escape(js.url),
        js_integrity=js.integrity,
        auth_section=_auth_section(is_admin, _page_path(request)),
        admin_sections=admin_sections,
        docs_url="docs",
    )


@router.get("/", response_class=HTMLResponse, name="c2c_index")
async def c2c_index(request: Request) -> HTMLResponse:
    """The admin page."""
    # The page shows the login state: never cache it.
    return HTMLResponse(await render_index(request), headers={"Cache-Control": "no-store"})
