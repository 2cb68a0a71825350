"""Sign-in, sessions, tokens and roles of the web app, tried the way an attacker would.

A real users database (SQLite, ``demand_response.webusers``) made with the ``dr web user``
command, Flask's test client; no chain is needed (the roles' addresses come from their keys,
and a chain that does not answer is an answer the pages already handle). Wrong passwords and
the lockout (per account, per client address, across two app instances = two workers), a
stolen, signed-out, expired or forged session, a session after a password change or the
user's removal, CSRF on every form, role escapes, bearer tokens and their revocation, an
open redirect, and ``WEB_AUTH=off`` outside loopback.
"""

from __future__ import annotations

import io
import re
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("flask_wtf")

from eth_account import Account  # noqa: E402

from demand_response import devchain  # noqa: E402
from demand_response.cli import main as dr  # noqa: E402
from flaskapp import auth, create_app  # noqa: E402

KEYS = devchain.dev_private_keys(3)
CONSUMER = Account.from_key(KEYS[1]).address
STRANGER = Account.from_key(KEYS[2]).address
PASSWORD = "correct horse battery"
ENV_KEYS = ("RPC_URL", "NETWORK", "CHAIN_ID", "CONTRACT_ADDRESS", "UTILITY_ACCOUNT", "CONSUMER_ACCOUNT",
            "UTILITY_PRIVATE_KEY", "CONSUMER_PRIVATE_KEY", "BIDS_FILE", "RESULTS_FILE", "STATE_DIR", "DR_ENV_FILE",
            "DR_ROLE", "FLASK_SECRET_KEY", "WEB_AUTH", "WEB_USERS_DB", "WEB_SESSION_MINUTES",
            "WEB_LOGIN_MAX_FAILURES", "WEB_LOGIN_MAX_CLIENT_FAILURES", "WEB_LOGIN_LOCKOUT_MINUTES")
#: Every form a page posts, with the path parameters filled in.
FORMS = ["/consumer/daemon/start", "/consumer/daemon/stop", "/consumer/unlock", "/consumer/bids",
         "/consumer/bids/fill", "/consumer/withdraw", "/utility/requests", "/utility/requests/1/settle",
         "/utility/requests/1/delivery/confirm", "/utility/withdraw", "/utility/unlock", "/logout", "/login"]


def _add(db: Path, name: str, role: str, address: str | None = None) -> None:
    """``dr web user add`` as an operator types it (the password from stdin)."""
    args = ["web", "user", "add", name, "--role", role, "--password-file", "-"] + (["--address", address] if address else [])
    stdin, sys.stdin = sys.stdin, io.StringIO(PASSWORD + "\n")
    try:
        assert dr(args) == 0
    finally:
        sys.stdin = stdin


@pytest.fixture(scope="module")
def users_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A users database with one user of each role (made once: scrypt is slow on purpose)."""
    folder = tmp_path_factory.mktemp("users")
    db = folder / "web-users.sqlite3"
    mp = pytest.MonkeyPatch()
    mp.setenv("WEB_USERS_DB", str(db))
    mp.setenv("DR_ENV_FILE", str(folder / "none.env"))
    try:
        _add(db, "olga", "operator")
        _add(db, "hanna", "household", CONSUMER)
        _add(db, "harry", "household", STRANGER)  # bound to another household's address
        _add(db, "vic", "viewer")
    finally:
        mp.undo()
    return db


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def db(users_template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "web-users.sqlite3"
    shutil.copy(users_template, copy)
    return copy


@pytest.fixture
def make_app(db: Path, tmp_path: Path) -> Iterator[Any]:
    apps = []

    def make(**extra: Any) -> Any:
        config = {"TESTING": True, "SECRET_KEY": "one-key-for-every-worker", "DR_ROLE": "both",
                  "RPC_URL": f"http://127.0.0.1:{devchain.free_port()}", "CONSUMER_PRIVATE_KEY": KEYS[1],
                  "UTILITY_PRIVATE_KEY": KEYS[0], "BIDS_FILE": str(tmp_path / "bids.json"),
                  "RESULTS_FILE": str(tmp_path / "results.json"), "STATE_DIR": str(tmp_path / "state"),
                  "DR_ENV_FILE": str(tmp_path / "none.env"), "WEB_USERS_DB": str(db), **extra}
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["dr_daemon"].stop()


@pytest.fixture
def app(make_app: Any) -> Any:
    return make_app()


def _csrf(client: Any, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'data-csrf="([^"]+)"', html)
    assert match, html[:300]
    return match.group(1)


def _login(client: Any, name: str, password: str = PASSWORD, next_: str | None = None, **kw: Any) -> Any:
    path = "/login" + (f"?next={next_}" if next_ else "")
    return client.post(path, data={"csrf_token": _csrf(client), "name": name, "password": password}, **kw)


def _signed_in(app: Any, name: str) -> Any:
    """A client with a session of ``name``, opened as the sign-in page opens it (without the
    page's deliberately slow password check: the tests of the page itself use ``_login``)."""
    client = app.test_client()
    with app.app_context():
        users = auth.store()
        sid = users.open_session(users.need(name), auth.policy(app).session_s, "127.0.0.1")
    cookie = app.session_interface.get_signing_serializer(app).dumps({"sid": sid})
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie)
    return client


def _token(db: Path, name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WEB_USERS_DB", str(db))
    capsys.readouterr()
    assert dr(["web", "user", "token", name, "--label", "test"]) == 0
    return capsys.readouterr().out.strip()


# -- signing in -------------------------------------------------------------------------------


def test_pages_redirect_to_the_sign_in_and_the_api_answers_401_while_health_stays_open(app: Any) -> None:
    client = app.test_client()
    page = client.get("/utility/")
    assert page.status_code == 302 and page.headers["Location"] == "/login?next=/utility/"
    api = client.get("/api/status")
    assert api.status_code == 401 and api.json["error"].startswith("sign in first")
    assert api.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.put("/api/bids", data="{}").status_code == 401
    assert client.get("/api/health").status_code == 200
    assert client.get("/healthz").status_code in (200, 503)  # unauthenticated, as before
    assert client.get("/static/openapi.json").status_code == 200


def test_the_password_is_stored_as_an_scrypt_hash_never_in_clear(db: Path) -> None:
    stored = [row[0] for row in sqlite3.connect(db).execute("SELECT password FROM users")]
    assert len(stored) == 4 and all(value.startswith("scrypt$32768$8$1$") for value in stored)
    assert not any(PASSWORD in value for value in stored)
    assert len(set(stored)) == 4  # one salt per user: equal passwords, different hashes
    assert oct(db.stat().st_mode & 0o777) == "0o600"


def test_a_wrong_password_and_an_unknown_name_get_the_same_refusal(app: Any) -> None:
    client = app.test_client()
    wrong = _login(client, "olga", "not the password")
    unknown = _login(client, "mallory", PASSWORD)
    for reply in (wrong, unknown):
        assert reply.status_code == 401
        assert "Wrong user name or password." in reply.get_data(as_text=True)
    assert client.get("/api/status").status_code == 401


def test_five_wrong_passwords_lock_the_account_even_against_the_right_one_in_every_worker(
        make_app: Any, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worker_a, worker_b = make_app().test_client(), make_app().test_client()
    for attempt in range(5):
        assert _login(worker_a if attempt % 2 else worker_b, "olga", f"guess {attempt}").status_code == 401
    for client in (worker_a, worker_b):
        locked = _login(client, "olga")
        assert locked.status_code == 429
        assert "Too many failed sign-ins for this account: try again in 15 min." in locked.get_data(as_text=True)
    assert _login(make_app().test_client(), "vic").status_code == 303  # other accounts are not locked
    monkeypatch.setenv("WEB_USERS_DB", str(db))
    assert dr(["web", "user", "unlock", "olga"]) == 0
    assert _login(worker_a, "olga").status_code == 303


def test_a_client_address_that_keeps_failing_is_locked_out_for_every_account(make_app: Any) -> None:
    app = make_app(WEB_LOGIN_MAX_CLIENT_FAILURES="3")
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    for name in ("a1", "a2", "a3"):
        assert _login(attacker, name, "guess").status_code == 401
    reply = _login(attacker, "vic")
    assert reply.status_code == 429 and "for this address" in reply.get_data(as_text=True)
    assert _login(app.test_client(), "vic").status_code == 303  # another address signs in


def test_a_forged_x_forwarded_for_does_not_move_the_lockout_to_another_address(make_app: Any) -> None:
    app = make_app(WEB_LOGIN_MAX_CLIENT_FAILURES="2")
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.9"  # not a trusted proxy: its header is ignored
    for n in range(2):
        assert _login(attacker, "x", "guess", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code == 401
    assert _login(attacker, "vic", headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 429
    proxy = app.test_client()  # the local proxy's header names the client
    assert _login(proxy, "vic", headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.8"}).status_code == 303


def test_signing_in_starts_a_new_session_and_goes_only_to_a_local_page(app: Any) -> None:
    client = app.test_client()
    token_before = _csrf(client)
    reply = _login(client, "vic", next_="/utility/")
    assert reply.status_code == 303 and reply.headers["Location"] == "/utility/"
    assert _csrf(client, "/utility/") != token_before  # no session fixation
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        other = app.test_client()
        reply = _login(other, "vic", next_=target)
        assert reply.status_code == 303 and reply.headers["Location"] == "/"
    page = client.get("/utility/").get_data(as_text=True)
    assert 'data-testid="signed-in-as">vic · viewer<' in page and "Sign out" in page


# -- sessions ---------------------------------------------------------------------------------


def test_a_session_holds_across_workers_and_a_cookie_replayed_after_sign_out_is_refused(make_app: Any) -> None:
    worker_a, worker_b = make_app(), make_app()
    client = _signed_in(worker_a, "olga")
    cookie = client.get_cookie("dr_both_session").value
    thief = worker_b.test_client()
    thief.set_cookie("dr_both_session", cookie)
    assert thief.get("/api/utility/requests").status_code != 401  # the same session in the other worker
    client.post("/logout", data={"csrf_token": _csrf(client, "/utility/")})
    assert client.get("/utility/").status_code == 302
    assert thief.get("/api/status").status_code == 401  # the copied cookie died with the session


def test_an_expired_session_is_refused(make_app: Any) -> None:
    app = make_app(WEB_SESSION_MINUTES="0")  # sessions end as soon as they start
    client = app.test_client()
    assert _login(client, "olga").status_code == 303
    assert client.get("/utility/").status_code == 302
    assert client.get("/api/status").status_code == 401


def test_a_cookie_with_a_made_up_session_or_signed_with_another_key_is_refused(make_app: Any) -> None:
    real = _signed_in(make_app(), "olga")
    other_key = make_app(SECRET_KEY="the attacker's key").test_client()
    with other_key.session_transaction() as session:
        session["sid"] = "guessed-session-id"
    forged = make_app().test_client()
    forged.set_cookie("dr_both_session", other_key.get_cookie("dr_both_session").value)
    assert forged.get("/api/status").status_code == 401
    assert other_key.get("/api/status").status_code == 401  # its own key, but no such session
    assert real.get("/api/status").status_code != 401


def test_changing_the_password_or_removing_the_user_ends_their_sessions(app: Any, db: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    olga, vic = _signed_in(app, "olga"), _signed_in(app, "vic")
    monkeypatch.setenv("WEB_USERS_DB", str(db))
    monkeypatch.setattr(sys, "stdin", io.StringIO("a brand new password\n"))
    assert dr(["web", "user", "passwd", "olga", "--password-file", "-"]) == 0
    assert olga.get("/api/status").status_code == 401
    assert _login(app.test_client(), "olga").status_code == 401  # the old password is gone
    assert _login(app.test_client(), "olga", "a brand new password").status_code == 303
    assert dr(["web", "user", "remove", "vic"]) == 0
    assert vic.get("/api/status").status_code == 401
    assert _login(app.test_client(), "vic").status_code == 401


# -- CSRF -------------------------------------------------------------------------------------


def test_every_form_post_without_its_csrf_token_is_refused(app: Any) -> None:
    client = _signed_in(app, "olga")
    for path in FORMS:
        reply = client.post(path, data={"name": "olga", "password": PASSWORD, "csrf_token": "forged"})
        assert reply.status_code == 400 and "Form expired" in reply.get_data(as_text=True), path
        assert client.post(path, data={"name": "olga", "password": PASSWORD}).status_code == 400, path
    assert client.get("/api/utility/requests").status_code != 401  # still signed in


def test_the_api_write_needs_the_csrf_header_with_a_cookie_but_not_with_a_bearer_token(
        app: Any, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    body = '{"version": 1, "bids": [{"watts": 1000, "price_wei_per_kwh": 30000000000000}]}'
    hanna = _signed_in(app, "hanna")
    assert hanna.put("/api/bids", data=body).status_code == 400
    assert hanna.put("/api/bids", data=body, headers={"X-CSRFToken": _csrf(hanna, "/consumer/bids")}).status_code == 200
    token = _token(db, "hanna", capsys, monkeypatch)
    bearer = app.test_client().put("/api/bids", data=body, headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 200 and bearer.json["saved"] == 1


# -- roles ------------------------------------------------------------------------------------


def test_every_view_has_a_scope_and_a_new_one_is_staff_only(app: Any) -> None:
    for rule in app.url_map.iter_rules():
        if rule.endpoint in auth.PUBLIC or rule.endpoint.startswith("openadr3."):
            continue
        assert auth.scope_of(rule.endpoint) in ("any", "household", "utility"), rule
    assert auth.scope_of("api.something_added_later") == "utility"  # fails closed for a household


def test_a_household_reaches_its_own_console_and_nothing_of_the_utility(app: Any) -> None:
    hanna = _signed_in(app, "hanna")
    assert hanna.get("/consumer/bids").status_code == 200
    assert hanna.get("/api/bids").status_code == 200
    saved = hanna.post("/consumer/bids", data={"csrf_token": _csrf(hanna, "/consumer/bids"), "rows-0-kw": "1",
                                               "rows-0-price": "30000", "save": "Save bids"})
    assert saved.status_code == 302, saved.get_data(as_text=True)[:2000]
    assert "Utility</a>" not in hanna.get("/consumer/bids").get_data(as_text=True)
    token = _csrf(hanna, "/consumer/bids")
    for path in ("/utility/", "/utility/requests/1", "/api/utility/requests", "/api/utility/preview?cap=1"):
        assert hanna.get(path).status_code == 403, path
    for path in ("/utility/requests", "/utility/withdraw", "/utility/requests/1/settle", "/utility/unlock"):
        assert hanna.post(path, data={"csrf_token": token}).status_code == 403, path


def test_a_household_bound_to_another_address_sees_none_of_this_console(app: Any) -> None:
    harry = _signed_in(app, "harry")
    for path in ("/consumer/", "/consumer/bids", "/consumer/results", "/api/status", "/api/bids", "/api/results",
                 "/api/daemon", "/api/requests", "/api/requests/1"):
        reply = harry.get(path)
        assert reply.status_code == 403, path
    assert CONSUMER in harry.get("/api/status").json["error"]  # says whose console it is
    token = _csrf(harry, "/login")
    for path in ("/consumer/bids", "/consumer/daemon/start", "/consumer/withdraw"):
        assert harry.post(path, data={"csrf_token": token}).status_code == 403, path


def test_a_household_on_a_utility_only_server_has_nothing_to_see(make_app: Any) -> None:
    hanna = _signed_in(make_app(DR_ROLE="utility"), "hanna")
    reply = hanna.get("/api/status")
    assert reply.status_code == 403 and "no household console" in reply.json["error"]
    assert hanna.get("/utility/").status_code == 403


def test_a_viewer_reads_everything_and_every_post_is_refused(app: Any) -> None:
    vic = _signed_in(app, "vic")
    for path in ("/consumer/bids", "/utility/", "/api/status", "/api/utility/requests"):
        assert vic.get(path).status_code in (200, 503), path
    token = _csrf(vic, "/consumer/bids")
    for path in FORMS[:-2]:
        reply = vic.post(path, data={"csrf_token": token, "rows-0-kw": "1", "rows-0-price": "1"})
        assert reply.status_code == 403 and "reads everything and changes nothing" in reply.get_data(as_text=True), path
    assert vic.put("/api/bids", data="{}", headers={"X-CSRFToken": token}).status_code == 403


def test_an_operator_acts_on_the_dashboard_but_not_for_a_household(app: Any) -> None:
    olga = _signed_in(app, "olga")
    token = _csrf(olga, "/utility/")
    assert olga.post("/utility/withdraw", data={"csrf_token": token}).status_code != 403
    assert olga.post("/consumer/withdraw", data={"csrf_token": token}).status_code == 403
    assert olga.get("/consumer/bids").status_code == 200  # reads


# -- tokens -----------------------------------------------------------------------------------


def test_a_token_works_on_the_api_only_until_revoked_and_never_on_pages(
        app: Any, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    token = _token(db, "olga", capsys, monkeypatch)
    assert token.startswith("drt_")
    assert token not in db.read_bytes().decode("latin-1")  # stored hashed
    client = app.test_client()
    auth_header = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/utility/requests", headers=auth_header).status_code != 401
    assert client.get("/utility/", headers=auth_header).status_code == 302  # pages take a session only
    for bad in ("Bearer drt_made-up", "Bearer " + token[:-1], "Bearer "):
        assert client.get("/api/status", headers={"Authorization": bad}).status_code == 401
    assert dr(["web", "user", "token", "olga", "--revoke", "all"]) == 0
    assert client.get("/api/utility/requests", headers=auth_header).status_code == 401


def test_a_household_token_is_held_to_the_households_address(
        app: Any, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    harry = {"Authorization": f"Bearer {_token(db, 'harry', capsys, monkeypatch)}"}
    client = app.test_client()
    assert client.get("/api/results", headers=harry).status_code == 403
    assert client.get("/api/utility/requests", headers=harry).status_code == 403
    assert client.put("/api/bids", data="{}", headers=harry).status_code == 403
    assert dr(["web", "user", "remove", "harry"]) == 0
    assert client.get("/api/bids/curve.svg", headers=harry).status_code == 401  # removed with its user


# -- development switch -----------------------------------------------------------------------


def test_sign_in_off_serves_loopback_only_and_says_so_on_every_page(make_app: Any) -> None:
    app = make_app(WEB_AUTH="off")
    local = app.test_client()
    page = local.get("/consumer/bids")
    assert page.status_code == 200 and "Sign-in is OFF" in page.get_data(as_text=True)
    remote = app.test_client()
    remote.environ_base["REMOTE_ADDR"] = "192.0.2.10"
    assert remote.get("/consumer/bids").status_code == 403
    assert remote.get("/api/status").status_code == 403
    proxied = local.get("/api/status", headers={"X-Forwarded-For": "192.0.2.10"})
    assert proxied.status_code == 403 and "WEB_AUTH=off" in proxied.json["error"]
    assert local.post("/consumer/withdraw", data={}).status_code == 400  # CSRF still checked


def test_the_sign_in_page_says_how_to_create_the_first_user(make_app: Any, tmp_path: Path) -> None:
    app = make_app(WEB_USERS_DB=str(tmp_path / "nobody-yet.sqlite3"))
    page = app.test_client().get("/login").get_data(as_text=True)
    assert "dr web user add NAME --role operator" in page
    assert not (tmp_path / "nobody-yet.sqlite3").exists()  # the app never creates it
