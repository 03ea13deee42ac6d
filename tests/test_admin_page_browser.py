"""The admin page in a real headless Chromium, behind the default ArmorHeaderMiddleware.

No browser download: Playwright drives Debian's /usr/bin/chromium. The page must load with no CSP
violation and no console error, log in with the secret, run the health checks, change a logging level
and show the stacks. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.admin_fixtures import SECRET, UvicornService
from tests.conftest import missing

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"

# Runs before the page's own scripts (through DevTools, so the page's CSP does not apply to it).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


@pytest.fixture(scope="module")
def service() -> Iterator[UvicornService]:
    server = UvicornService()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM) and shutil.which("chromium") is None:
        missing("chromium (Debian package)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        yield launched
        launched.close()


class PageProblems:
    """Console errors, uncaught exceptions and failed requests of one page."""

    def __init__(self, page: Any) -> None:
        self.console: list[str] = []
        self.exceptions: list[str] = []
        self.failed: list[str] = []
        page.on("console", lambda message: self.console.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: self.exceptions.append(str(error)))
        page.on("requestfailed", lambda request: self.failed.append(f"{request.url} {request.failure}"))

    def assert_none(self, page: Any) -> None:
        violations = page.evaluate("window.__cspViolations")
        assert violations == [], violations
        assert self.console == [], self.console
        assert self.exceptions == [], self.exceptions
        assert self.failed == [], self.failed


def _new_page(browser: Any, color_scheme: str = "light") -> tuple[Any, Any, PageProblems]:
    context = browser.new_context(color_scheme=color_scheme, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    return context, page, PageProblems(page)


def test_public_view(service: UvicornService, browser: Any) -> None:
    context, page, problems = _new_page(browser)
    try:
        response = page.goto(f"{service.url}/c2c/")
        assert response.status == 200
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert page.locator("#c2c-login-form").is_visible()
        # Without admin access only the public parts are sent.
        assert page.locator("#c2c-logging").count() == 0
        assert page.locator("#c2c-debug").count() == 0
        page.click("#c2c-health-run-all")
        page.wait_for_selector('#c2c-health-table tr[data-check="AlwaysFine"]')
        page.wait_for_load_state("networkidle")
        problems.assert_none(page)
    finally:
        context.close()


def test_admin_workflow(service: UvicornService, browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    context, page, problems = _new_page(browser)
    expect = pytest.importorskip("playwright.sync_api").expect
    try:
        page.goto(f"{service.url}/c2c/")
        # Log in with the secret: the page reloads with the admin tools.
        page.fill("#c2c-secret", SECRET)
        page.click("#c2c-login")
        page.wait_for_selector("#c2c-logging")
        page.wait_for_selector("#c2c-auth-user")
        assert page.locator("#c2c-login-form").count() == 0
        # Playwright's expect() polls from outside the page: wait_for_function would need 'unsafe-eval'.
        expect(page.locator("#c2c-login-state")).to_contain_text("admin")

        # Health checks: all, then by the tag offered after the first run.
        page.click("#c2c-health-run-all")
        row = page.locator('#c2c-health-table tr[data-check="AlwaysFine"]')
        row.wait_for()
        assert row.locator(".c2c-status").inner_text() == "200"
        page.locator("#c2c-health-tag-buttons button", has_text="liveness").click()
        expect(page.locator("#c2c-health-summary")).to_contain_text("tagged liveness")

        # Logging level: set, listed as an override, and really applied in the service.
        logger = "admin_service.browser_test"
        page.fill("#c2c-logging-name", logger)
        page.select_option("#c2c-logging-level", "DEBUG")
        page.click("#c2c-logging-set")
        page.wait_for_selector(f'#c2c-logging-overrides tr[data-logger="{logger}"]')
        assert "DEBUG" in page.locator("#c2c-logging-result").inner_text()
        level = httpx.get(
            f"{service.url}/c2c/logging/level", params={"name": logger}, headers={"X-API-Key": SECRET}, timeout=10
        ).json()
        assert level["level"] == "DEBUG"

        # Request headers, credentials masked.
        page.click("#c2c-headers-show")
        page.wait_for_selector("#c2c-headers-result table")
        assert "*****" in page.locator("#c2c-headers-result").inner_text()

        # Stacks of the service's process.
        page.click("#c2c-debug-stacks")
        page.wait_for_selector("#c2c-debug-result .c2c-process")
        stacks = page.locator("#c2c-debug-result").inner_text()
        assert "Thread MainThread" in stacks
        assert "Task " in stacks
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(ARTIFACTS / "admin-page.png"), full_page=True)

        # Clear the override from the page.
        page.locator(f'#c2c-logging-overrides tr[data-logger="{logger}"] button').click()
        page.wait_for_selector(f'#c2c-logging-overrides tr[data-logger="{logger}"]', state="detached")
        problems.assert_none(page)

        # Log out: back to the public view.
        page.click("#c2c-logout")
        page.wait_for_selector("#c2c-login-form")
        assert page.locator("#c2c-logging").count() == 0
        problems.assert_none(page)
    finally:
        context.close()


def test_dark_mode(service: UvicornService, browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    context, page, problems = _new_page(browser, color_scheme="dark")
    try:
        page.goto(f"{service.url}/c2c/")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(15, 19, 24)"
        page.screenshot(path=str(ARTIFACTS / "admin-page-dark.png"), full_page=True)
        problems.assert_none(page)
    finally:
        context.close()
