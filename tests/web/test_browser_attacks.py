"""Sign-in tried the way an attacker would, in headless Chromium against the app with sign-in
on (test_auth.py tries the same rules through Flask's test client; this proves them in a real
browser with real cookies): wrong passwords up to the lockout, a session cookie stolen and
replayed after sign-out and after expiry, a form posted from another page without the CSRF
token, and a household reaching for another household's console and the operator's actions.
Reuses test_browser.py's ganache (its ``stack`` fixture) and its Chromium settings."""

from __future__ import annotations

import http.server
import io
import re
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from test_browser import ARGS, CHROMIUM, WAIT, Server, stack, sync_api  # noqa: F401 - stack used by name

from demand_response import devchain
from demand_response.cli import main as dr
from eth_account import Account
from flaskapp import create_app

pytestmark = pytest.mark.browser
PASSWORD = "a household's long password"
KEYS = devchain.dev_private_keys(3)


def _add(db: Path, name: str, role: str, address: str | None = None) -> None:
    """``dr web user add`` as a utility types it (the password from stdin)."""
    args = ["web", "user", "add", name, "--role", role, "--password-file", "-"] + (["--address", address] if address else [])
    stdin, sys.stdin = sys.stdin, io.StringIO(PASSWORD + "\n")
    try:
        assert dr(args) == 0
    finally:
        sys.stdin = stdin


@pytest.fixture(scope="module")
def site(stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory,
         monkeypatch_module: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The console and dashboard in one app (DR_ROLE=both) with sign-in on, and its users."""
    tmp = tmp_path_factory.mktemp("attacks")
    db = tmp / "users.sqlite3"
    monkeypatch_module.setenv("WEB_USERS_DB", str(db))
    monkeypatch_module.setenv("DR_ENV_FILE", str(tmp / "none.env"))
    _add(db, "hanna", "household", Account.from_key(KEYS[1]).address)  # this console's household
    _add(db, "harry", "household", Account.from_key(KEYS[2]).address)  # another household
    _add(db, "olga", "operator")
    app = create_app({"RPC_URL": stack["rpc"], "CONTRACT_ADDRESS": stack["contract"], "DR_ROLE": "both",
                      "CONSUMER_PRIVATE_KEY": KEYS[1], "UTILITY_PRIVATE_KEY": KEYS[0], "WEB_USERS_DB": str(db),
                      "STATE_DIR": str(tmp / "state"), "BIDS_FILE": str(tmp / "bids.json"),
                      "DR_ENV_FILE": str(tmp / "none.env"), "DEPLOYMENTS_FILE": str(tmp / "deployments.json"),
                      "SECRET_KEY": "attack-test-key", "WEB_LOGIN_MAX_FAILURES": "5"})
    server = Server(app)
    yield {"url": server.url, "db": db, "app": app}
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def fresh(chromium: Any) -> Iterator[Any]:
    """A new browser context (its own cookie jar): another person's browser."""
    contexts: list[Any] = []

    def make() -> Any:
        context = chromium.new_context()
        context.set_default_timeout(WAIT)
        contexts.append(context)
        return context
    yield make
    for context in contexts:
        context.close()


def _sign_in(page: Any, url: str, name: str, password: str = PASSWORD) -> None:
    page.goto(url + "/login")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("button[type=submit]")


def test_wrong_passwords_lock_the_account_so_even_the_right_one_is_refused(site: dict[str, Any],
                                                                          fresh: Any) -> None:
    expect = sync_api.expect
    page = fresh().new_page()
    for _ in range(5):
        _sign_in(page, site["url"], "olga", "guess " + "x" * 8)
        expect(page.locator("[data-testid=login-problem]")).to_have_text("Wrong user name or password.")
    _sign_in(page, site["url"], "olga")  # the right password, now too late
    expect(page.locator("[data-testid=login-problem]")).to_contain_text("Too many failed sign-ins")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(site["url"] + "/utility/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    dr(["web", "user", "unlock", "olga"])  # the documented way back (WEB_USERS_DB is this site's)


def test_a_session_cookie_copied_to_another_browser_dies_with_sign_out_and_with_expiry(site: dict[str, Any],
                                                                                      fresh: Any) -> None:
    expect = sync_api.expect
    victim = fresh()
    page = victim.new_page()
    _sign_in(page, site["url"], "hanna")
    expect(page.locator("[data-testid=signed-in-as]")).to_contain_text("hanna")
    stolen = victim.cookies()
    thief = fresh()
    thief.add_cookies(stolen)
    loot = thief.new_page()
    loot.goto(site["url"] + "/consumer/")  # while the session lives, the cookie works: that is why it must die
    expect(loot.locator("[data-testid=signed-in-as]")).to_contain_text("hanna")
    page.click("text=Sign out")
    expect(page).to_have_url(re.compile(r"/login$"))
    loot.goto(site["url"] + "/consumer/")
    expect(loot).to_have_url(re.compile(r"/login\?next="))
    assert loot.request.get(site["url"] + "/api/status").status == 401

    _sign_in(page, site["url"], "hanna")  # a new session, stolen again, then it expires
    expect(page.locator("[data-testid=signed-in-as]")).to_contain_text("hanna")
    thief.clear_cookies()
    thief.add_cookies(victim.cookies())
    with sqlite3.connect(site["db"]) as db:
        db.execute("UPDATE sessions SET expires_at = 0")
    loot.goto(site["url"] + "/consumer/results")
    expect(loot).to_have_url(re.compile(r"/login\?next="))
    page.goto(site["url"] + "/consumer/")
    expect(page).to_have_url(re.compile(r"/login\?next="))


class _Attacker(http.server.BaseHTTPRequestHandler):
    """Another site's page: a form that posts to the console's daemon start, submitted at once."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = (f'<form id="f" method="post" action="{self.target}/consumer/daemon/start">'
                '<input name="bids_source" value="file"></form><script>document.getElementById("f").submit()</script>')
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


def test_a_form_posted_from_another_page_without_the_csrf_token_changes_nothing(site: dict[str, Any],
                                                                                fresh: Any) -> None:
    expect = sync_api.expect
    context = fresh()
    page = context.new_page()
    _sign_in(page, site["url"], "hanna")
    expect(page.locator("[data-testid=signed-in-as]")).to_contain_text("hanna")
    _Attacker.target = site["url"]
    # Same host, another port: the same site to the browser, so the session cookie goes along
    # (SameSite cannot help); only the CSRF token stops it.
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", devchain.free_port()), _Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        evil = context.new_page()
        evil.goto(f"http://127.0.0.1:{attacker.server_address[1]}/")
        expect(evil).to_have_url(site["url"] + "/consumer/daemon/start")
        assert "Form expired" in evil.content() or "CSRF" in evil.content()
    finally:
        attacker.shutdown()
    assert site["app"].extensions["dr_daemon"].current is None  # no daemon was started
    page.goto(site["url"] + "/consumer/")
    expect(page.locator("[data-testid=daemon-state]")).to_have_text("stopped")


def test_a_household_cannot_reach_another_households_console_or_the_operators_actions(site: dict[str, Any],
                                                                                      fresh: Any) -> None:
    expect = sync_api.expect
    harry = fresh().new_page()  # bound to another address than this console's
    _sign_in(harry, site["url"], "harry")
    for path in ("/consumer/", "/consumer/results", "/consumer/bids"):
        response = harry.goto(site["url"] + path)
        assert response.status == 403, path
    expect(harry.locator("main")).to_contain_text("a household sees only its own console")
    assert harry.request.get(site["url"] + "/api/results").status == 403

    hanna = fresh().new_page()  # this console's household: her console, never the utility's
    _sign_in(hanna, site["url"], "hanna")
    expect(hanna.locator("[data-testid=signed-in-as]")).to_contain_text("hanna")
    assert hanna.goto(site["url"] + "/utility/").status == 403
    token = hanna.locator("body").get_attribute("data-csrf")  # her own, valid CSRF token
    for path in ("/utility/requests", "/utility/requests/1/settle", "/utility/withdraw"):
        reply = hanna.request.post(site["url"] + path, form={"csrf_token": token}, max_redirects=0)
        assert reply.status == 403, path
    assert hanna.request.get(site["url"] + "/api/utility/requests").status == 403
