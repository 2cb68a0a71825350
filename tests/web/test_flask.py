"""The web front end through Flask's test client, against a real ganache (no mocks).

Every route, every form's validation errors, CSRF on every form, the JSON API, role
separation, and the user-caused failures that must never be a 500: a chain that is down,
a wrong keystore password, invalid forms and broken files.
"""

from __future__ import annotations

import json
from decimal import Decimal
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("flask_wtf")

from demand_response import devchain  # noqa: E402
from demand_response.accounts import save_keystore  # noqa: E402
from demand_response.chain import Signer, connect  # noqa: E402
from demand_response.contract import DemandReduction  # noqa: E402
from flaskapp import create_app  # noqa: E402
from flaskapp.daemon import stop_all  # noqa: E402
from demand_response.units import ETH, format_amount  # noqa: E402
from demand_response import fees  # noqa: E402


def fmt_eth(wei: int) -> str:
    """An amount as the pages show it (the one unit model)."""
    return format_amount(wei, ETH)

GWEI = 10**9
CAP_GWEI = 128_000  # 128e12 wei/kWh: grid step 1,000 gwei
CAP = "0.000128"  # the same cap as the forms take it: ETH per kWh
ENV_KEYS = ("RPC_URL", "NETWORK", "CHAIN_ID", "CONTRACT_ADDRESS", "UTILITY_ACCOUNT", "UTILITY_ACCOUNT_PASS",
            "CONSUMER_ACCOUNT", "CONSUMER_ACCOUNT_PASS", "UTILITY_PRIVATE_KEY", "CONSUMER_PRIVATE_KEY",
            "BIDS_FILE", "RESULTS_FILE", "STATE_DIR", "DR_ENV_FILE", "KEYSTORE_DIR", "DR_ROLE", "DR_PRICE_UNIT", "USD_PER_ETH",
            "FLASK_SECRET_KEY", "BIDS_SOURCE", "AUTO_WITHDRAW", "POLL_INTERVAL", "DEPLOYMENTS_FILE")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devchain.DevChain]:
    chain = devchain.start("ganache", accounts=6, balance_eth=1000,
                           log_path=tmp_path_factory.mktemp("flask-chain") / "ganache.log")
    yield chain
    stop_all()
    chain.stop()


@pytest.fixture(scope="module")
def keys() -> list[str]:
    return devchain.dev_private_keys(6)


@pytest.fixture(scope="module")
def contract(node: devchain.DevChain, keys: list[str]) -> str:
    w3 = connect(node.url)
    return DemandReduction.deploy(Signer.from_key(w3, keys[0])).address


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def make_app(node: devchain.DevChain, contract: str, keys: list[str], tmp_path: Path) -> Iterator[Any]:
    apps = []

    def make(consumer: int = 1, utility: int | None = 0, csrf: bool = True, **extra: Any) -> Any:
        config = {
            "TESTING": True, "WTF_CSRF_ENABLED": csrf, "SECRET_KEY": "test-secret",
            "RPC_URL": node.url, "CONTRACT_ADDRESS": contract,
            "CONSUMER_PRIVATE_KEY": keys[consumer], "BIDS_FILE": str(tmp_path / "bids.json"),
            "RESULTS_FILE": str(tmp_path / "results.json"), "STATE_DIR": str(tmp_path / "state"),
            "DR_ENV_FILE": str(tmp_path / "missing.env"), "DEPLOYMENTS_FILE": str(tmp_path / "deployments.json"),
            "POLL_INTERVAL": "0.1", "WEB_AUTH": "off",  # sign-in: tests/web/test_auth.py
        }
        if utility is not None:
            config["UTILITY_PRIVATE_KEY"] = keys[utility]
        config.update(extra)
        app = create_app({k: v for k, v in config.items() if v is not None})
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["dr_daemon"].stop()


@pytest.fixture
def app(make_app: Any) -> Any:
    return make_app(csrf=False)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def csrf_token(client: Any, url: str) -> str:
    html = client.get(url).get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'data-csrf="([^"]+)"', html)
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def post_request(client: Any, target_kw: str = "3", bidding_s: str = "60", **extra: str) -> int:
    data = {"target_kw": target_kw, "bidding_s": bidding_s, "delay_s": "0", "duration_s": "3600",
            "cap": CAP, "rule": "uniform", "post": "1", **extra}
    response = client.post("/utility/requests", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return int(response.headers["Location"].rstrip("/").split("/")[-1])


def wait_for(predicate: Any, timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# -- pages ---------------------------------------------------------------------------------


def test_every_page_renders(client: Any) -> None:
    assert client.get("/").status_code == 302
    rid = post_request(client)
    for url, text in [
        ("/consumer/", "Consumer console"), ("/consumer/bids", "Your bids"), ("/consumer/results", "Results"),
        ("/utility/", "Utility dashboard"), (f"/utility/requests/{rid}", f"Request {rid}"),
    ]:
        response = client.get(url)
        html = response.get_data(as_text=True)
        assert response.status_code == 200, (url, html[:500])
        assert text in html
        assert "http://" not in re.sub(r'(<code>[^<]*</code>|xmlns="http://www.w3.org/2000/svg")', "", html), \
            f"{url} links an external resource"
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/openapi.json").status_code == 200


def test_unknown_pages_are_clear_404s(client: Any) -> None:
    for url in ("/nope", "/utility/requests/9999", "/api/requests/9999"):
        response = client.get(url)
        assert response.status_code == 404
    assert client.get("/api/requests/9999").get_json()["error"].startswith("there is no request")
    assert client.get("/consumer/daemon/start").status_code == 405


def test_console_shows_open_request_with_countdown(client: Any) -> None:
    rid = post_request(client, bidding_s="600")
    html = client.get("/consumer/").get_data(as_text=True)
    assert f'data-testid="request-{rid}"' in html
    assert re.search(r'data-deadline="\d+"', html)
    assert "3 kW" in html and "0.000128 ETH/kWh" in html


# -- bid form --------------------------------------------------------------------------------


def test_bid_form_saves_atomically(client: Any, app: Any) -> None:
    path = Path(app.extensions["dr"].settings.bids_file)
    response = client.post("/consumer/bids", data={
        "rows-0-kw": "1.5", "rows-0-price": "0.00004", "rows-1-kw": "0.25", "rows-1-price": "0.0000600005", "save": "1"})
    assert response.status_code == 302
    doc = json.loads(path.read_text())
    assert doc["bids"] == [{"watts": 1500, "price_wei_per_kwh": 40_000 * GWEI},
                           {"watts": 250, "price_wei_per_kwh": 60_000_500_000_000}]
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    page = client.get("/consumer/bids").get_data(as_text=True)
    assert "Saved 2 bid(s)" in page and 'value="0.0000600005"' in page


@pytest.mark.parametrize("field,value,message", [
    ("kw", "", "Enter the kW you can cut."),
    ("kw", "abc", "Not a valid decimal value"),
    ("kw", "-1", "Between 0.001 and"),
    ("kw", "0", "Between 0.001 and"),
    ("kw", "1.2345", "At most 3 decimals"),
    ("kw", "99999999", "Between 0.001 and"),
    ("price", "", "Enter the least you accept per kWh."),
    ("price", "0", "The price must be above 0."),
    ("price", "-5", "The price must be above 0."),
    ("price", "0.0000000000000000001", "ETH has at most 18"),
    ("price", "lots", "Not a valid decimal value"),
])
def test_bid_form_errors_show_next_to_the_field(client: Any, app: Any, field: str, value: str, message: str) -> None:
    path = Path(app.extensions["dr"].settings.bids_file)
    path.write_text('{"version": 1, "bids": [{"watts": 1, "price_wei_per_kwh": 1}]}')
    data = {"rows-0-kw": "1", "rows-0-price": "0.000001", "save": "1", f"rows-0-{field}": value}
    response = client.post("/consumer/bids", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    error = re.search(rf'<p class="error" id="rows-0-{field}-err">([^<]*)</p>', html)
    assert error and message in error.group(1), html[html.find("bid-rows"):][:1500]
    assert 'aria-invalid="true"' in html
    assert path.read_text() == '{"version": 1, "bids": [{"watts": 1, "price_wei_per_kwh": 1}]}'


def test_bid_rows_add_and_remove_without_javascript(client: Any) -> None:
    base = {"rows-0-kw": "1", "rows-0-price": "0.000001", "rows-1-kw": "2", "rows-1-price": "0.000002"}
    html = client.post("/consumer/bids", data={**base, "add": "1"}).get_data(as_text=True)
    assert 'name="rows-2-kw"' in html and "is-invalid" not in html
    html = client.post("/consumer/bids", data={**base, "remove": "0"}).get_data(as_text=True)
    assert 'value="2"' in html and 'name="rows-1-kw"' not in html


def test_fill_from_gridsim_fills_the_form_not_the_file(client: Any, app: Any) -> None:
    pytest.importorskip("numpy")
    path = Path(app.extensions["dr"].settings.bids_file)
    response = client.post("/consumer/bids/fill", data={})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Filled" in html or "no flexibility" in html
    assert not path.exists()
    rid = post_request(client, bidding_s="600")
    html = client.post("/consumer/bids/fill", data={}).get_data(as_text=True)
    if f"for request {rid}" in html:
        prices = [int(Decimal(v) * 10**18) for v in re.findall(r'name="rows-\d+-price"[^>]*value="([\d.]+)"', html)]
        assert prices and all(p % (1000 * GWEI) == 0 and p <= CAP_GWEI * GWEI for p in prices)  # on the request's grid


def test_bid_curve_preview(client: Any) -> None:
    svg = client.get("/api/bids/curve.svg?kw=1&price=0.000001&kw=2&price=0.0000005&kw=x&price=1").get_data(as_text=True)
    assert svg.startswith("<svg") and "<title" in svg and "3 kW offered" in svg and "ETH/kWh" in svg


# -- CSRF ------------------------------------------------------------------------------------


POSTS = ["/consumer/bids", "/consumer/bids/fill", "/consumer/daemon/start", "/consumer/daemon/stop",
         "/consumer/unlock", "/consumer/withdraw", "/utility/requests", "/utility/requests/1/settle",
         "/utility/requests/1/delivery/confirm", "/utility/requests/1/delivery/dispute",
         "/utility/requests/1/delivery/settle", "/utility/withdraw", "/utility/unlock"]


@pytest.mark.parametrize("url", POSTS)
def test_every_form_needs_its_csrf_token(make_app: Any, url: str) -> None:
    client = make_app(csrf=True).test_client()
    response = client.post(url, data={"rows-0-kw": "1", "rows-0-price": "0.000001", "save": "1", "password": "x"})
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)


def test_csrf_token_lets_the_form_through(make_app: Any) -> None:
    app = make_app(csrf=True)
    client = app.test_client()
    token = csrf_token(client, "/consumer/bids")
    response = client.post("/consumer/bids", data={"csrf_token": token, "rows-0-kw": "1", "rows-0-price": "0.000005", "save": "1"})
    assert response.status_code == 302
    assert client.put("/api/bids", data='{"version": 1, "bids": [{"kw": 1, "price_wei_per_kwh": 7}]}').status_code == 400
    response = client.put("/api/bids", data='{"version": 1, "bids": [{"kw": 1, "price_wei_per_kwh": 7}]}',
                          headers={"X-CSRFToken": token, "Content-Type": "application/json"})
    assert response.status_code == 200 and response.get_json()["saved"] == 1


# -- JSON API ----------------------------------------------------------------------------------


def test_json_api(client: Any, app: Any, keys: list[str]) -> None:
    assert client.get("/api/health").get_json() == {"ok": True}
    status = client.get("/api/status").get_json()
    assert status["chain"]["connected"] and status["chain"]["chain_id"] == 1337
    assert status["account"] and status["roles"] == {"consumer": True, "utility": True}
    assert status["daemon"]["state"] == "stopped" and status["price_unit"] == "ETH/kWh"
    assert "PRIVATE" not in json.dumps(status) and keys[1][2:] not in json.dumps(status)

    rid = post_request(client, bidding_s="600")
    listing = client.get("/api/requests?state=open").get_json()
    assert rid in [r["id"] for r in listing["requests"]]
    one = client.get(f"/api/requests/{rid}").get_json()
    assert one["state"] == "open" and one["target_watts"] == 3000 and one["cap_wei_per_kwh"] == str(CAP_GWEI * GWEI)
    assert one["my_bids"] == []
    stack = client.get(f"/api/requests/{rid}/stack").get_json()
    assert stack["levels"] == [] and stack["target_watts"] == 3000
    svg = client.get(f"/api/requests/{rid}/stack.svg")
    assert svg.mimetype == "image/svg+xml" and b"no bids yet" in svg.data

    assert client.get("/api/bids").get_json()["bids"] == []
    bad = client.put("/api/bids", data='{"version": 1, "bids": [{"kw": -1, "price_wei_per_kwh": 7}]}')
    assert bad.status_code == 400 and "kW must be positive" in bad.get_json()["error"]
    assert client.put("/api/bids", data="not json").status_code == 400
    good = client.put("/api/bids", data='{"version": 1, "bids": [{"watts": 1200, "price_wei_per_kwh": 7000000000}]}')
    assert good.status_code == 200
    assert client.get("/api/bids").get_json()["bids"][0] == {"watts": 1200, "price_wei_per_kwh": "7000000000",
                                                            "kw": 1.2, "price": "0.000000007"}
    assert client.get("/api/daemon").get_json()["state"] == "stopped"
    results = client.get("/api/results").get_json()
    assert results["history"]["requests"] == [] and results["records"] == []

    preview = client.get("/api/utility/preview?target_kw=3&cap=0.000128&duration_s=3600").get_json()
    assert preview["min_budget_wei"] == str(3000 * 3600 * CAP_GWEI * GWEI // 3_600_000)
    assert preview["scenarios"][-1]["promised_wei"] == preview["min_budget_wei"]
    for query in ("target_kw=&cap=0.000001", "target_kw=1&cap=abc", "target_kw=1&cap=0.000128&budget_eth=0.0000001",
                  "target_kw=0&cap=0.000001", "target_kw=1.0001&cap=0.000001", "target_kw=1&cap=0.000001&rule=x"):
        response = client.get(f"/api/utility/preview?{query}")
        assert response.status_code == 400 and response.get_json()["error"].startswith("cannot preview"), query
    history = client.get("/api/utility/requests").get_json()
    assert history["totals"]["requests"] >= 1


# -- utility ----------------------------------------------------------------------------------


@pytest.mark.parametrize("field,value,message", [
    ("target_kw", "", "Enter the reduction you need."),
    ("target_kw", "0", "Between 0.001 and"),
    ("target_kw", "1.0001", "At most 3 decimals"),
    ("bidding_s", "2", "Between 5 s and 30 days."),
    ("bidding_s", "x", "Not a valid integer value"),
    ("delay_s", "-1", "Between 0 s and"),
    ("duration_s", "0", "Between 60 s and 7 days."),
    ("cap", "", "Enter the most you pay per kWh."),
    ("cap", "0", "The price must be above 0."),
    ("cap", "0.0000000000000000001", "ETH has at most 18"),
    ("budget_eth", "-1", "The budget must be above 0"),
    ("budget_eth", "0.0000001", "below the"),
    ("rule", "auction", "Not a valid choice"),
    # Sealed bids, metered settlement and the bond (requestReductionWithTerms).
    ("reveal_s", "-1", "Between 0 (open bids) and 30 days."),
    ("report_s", "-60", "Between 0 (paid on acceptance) and 30 days."),
    ("dispute_s", "-1", "Between 0 and 30 days."),
    ("reveal_s", "30", "The reveal window (30 s) would end after the event starts"),
    ("dispute_s", "60", "A dispute window needs metered settlement"),
    ("bond_eth", "0.01", "A bond needs sealed bids or metered settlement"),
    ("bond_eth", "-0.01", "The bond cannot be negative."),
    ("bond_eth", "1e40", "The bond is too large"),
    # Found by test_fuzz_api: WTForms' NumberRange made a 400-digit integer a float (a 500).
    ("duration_s", "9" * 400, "Too large."),
    # The planner's rules, shown under their fields: a cap too small to price anything.
    ("cap", "0.0000005", "below the least the tools accept"),
    ("reveal_s", "9" * 400, "Too large."),
])
def test_request_form_errors(client: Any, field: str, value: str, message: str) -> None:
    data = {"target_kw": "3", "bidding_s": "60", "delay_s": "0", "duration_s": "3600", "cap": CAP,
            "rule": "uniform", "post": "1", field: value}
    before = client.get("/api/utility/requests").get_json()["totals"]["requests"]
    response = client.post("/utility/requests", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    error = re.search(rf'<p id="{field}-err" class="error">([^<]*)</p>', html)
    assert error and message in error.group(1), html[:3000]
    assert client.get("/api/utility/requests").get_json()["totals"]["requests"] == before


def test_request_preview_then_post(client: Any) -> None:
    data = {"target_kw": "5", "bidding_s": "60", "delay_s": "600", "duration_s": "1800", "cap": "0.0001",
            "rule": "pay_as_bid", "preview": "1"}
    html = client.post("/utility/requests", data=data).get_data(as_text=True)
    assert "Payout preview" in html and "If the full target clears at" in html
    assert "(rounded)" not in html  # 1e14 wei is a multiple of 128
    rid = post_request(client, target_kw="5", rule="pay_as_bid")
    info = client.get(f"/api/requests/{rid}").get_json()
    assert info["rule"] == "pay_as_bid" and info["target_watts"] == 5000


def test_settle_before_the_deadline_is_refused_clearly(client: Any) -> None:
    rid = post_request(client, bidding_s="600")
    response = client.post(f"/utility/requests/{rid}/settle")
    assert response.status_code == 409
    assert "select winners after that" in response.get_data(as_text=True)
    response = client.post("/utility/requests/9999/settle")
    assert response.status_code == 302


def test_role_separation(make_app: Any) -> None:
    consumer_only = make_app(utility=None, csrf=False).test_client()
    for url in ("/utility/", "/utility/requests/1"):
        response = consumer_only.get(url)
        assert response.status_code == 403 and "UTILITY_ACCOUNT" in response.get_data(as_text=True)
    assert consumer_only.post("/utility/requests", data={}).status_code == 403
    assert consumer_only.get("/api/utility/requests").status_code == 403
    assert "/utility/" not in consumer_only.get("/consumer/").get_data(as_text=True)

    utility_only = make_app(DR_ROLE="utility", csrf=False).test_client()
    assert utility_only.get("/consumer/").status_code == 403
    assert utility_only.get("/api/bids").status_code == 403
    assert utility_only.get("/").headers["Location"].endswith("/utility/")
    assert utility_only.get("/utility/").status_code == 200


def test_wrong_utility_account_is_a_clear_error(make_app: Any) -> None:
    client = make_app(utility=2, csrf=False).test_client()
    html = client.get("/utility/").get_data(as_text=True)
    assert "is not this contract&#39;s utility" in html or "is not this contract's utility" in html
    response = client.post("/utility/requests", data={"target_kw": "1", "bidding_s": "60", "delay_s": "0",
                                                      "duration_s": "3600", "cap": "0.000001", "rule": "uniform", "post": "1"})
    assert response.status_code == 409 and "not posted" in response.get_data(as_text=True)


# -- failures a user causes ---------------------------------------------------------------------


def test_chain_down_never_500s(make_app: Any) -> None:
    app = make_app(csrf=False, RPC_URL=f"http://127.0.0.1:{devchain.free_port()}")
    client = app.test_client()
    assert client.get("/consumer/bids").status_code == 200  # the form needs no chain
    for url in ("/consumer/", "/consumer/results", "/utility/", "/utility/requests/1"):
        response = client.get(url)
        assert response.status_code in (200, 503), url
        assert "cannot reach the RPC endpoint" in response.get_data(as_text=True), url
    for url in ("/api/requests", "/api/requests/1", "/api/requests/1/stack", "/api/utility/requests"):
        response = client.get(url)
        assert response.status_code == 503 and "cannot reach" in response.get_json()["error"], url
    assert client.get("/api/status").get_json()["chain"]["connected"] is False
    assert client.get("/api/results").status_code == 200
    # Saving bids needs no chain.
    assert client.post("/consumer/bids", data={"rows-0-kw": "1", "rows-0-price": "0.000005", "save": "1"}).status_code == 302
    response = client.post("/consumer/daemon/start", data={"source": "file"})
    assert response.status_code == 409 and "cannot reach the RPC endpoint" in response.get_data(as_text=True)
    for url in ("/consumer/withdraw", "/utility/requests/1/settle", "/utility/withdraw"):
        assert client.post(url).status_code == 409, url
    response = client.post("/utility/requests", data={"target_kw": "1", "bidding_s": "60", "delay_s": "0",
                                                      "duration_s": "3600", "cap": "0.000001", "rule": "uniform", "post": "1"})
    assert response.status_code == 409 and "cannot reach" in response.get_data(as_text=True)


def test_wrong_password_is_shown_next_to_the_field(make_app: Any, keys: list[str], tmp_path: Path) -> None:
    keystore, address = save_keystore(str(tmp_path / "alice.json"), keys[3], "right horse", kdf_iterations=2)
    app = make_app(consumer=3, csrf=False, CONSUMER_PRIVATE_KEY=None, CONSUMER_ACCOUNT=str(keystore))
    app.config.pop("CONSUMER_PRIVATE_KEY", None)
    client = app.test_client()
    client.post("/consumer/bids", data={"rows-0-kw": "1", "rows-0-price": "0.000005", "save": "1"})
    html = client.get("/consumer/").get_data(as_text=True)
    assert "locked" in html and 'name="password"' in html and address[:12] in html
    response = client.post("/consumer/daemon/start", data={"source": "file", "password": "wrong"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert re.search(r'<p id="password-err" class="error">Wrong password for keystore', html)
    assert "wrong" not in re.sub(r"Wrong password|wrong password", "", html).lower().replace("wrong_", "")
    response = client.post("/consumer/daemon/start", data={"source": "file", "password": ""})
    assert response.status_code == 400 and "Enter the keystore password" in response.get_data(as_text=True)
    response = client.post("/consumer/unlock", data={"password": "nope"})
    assert response.status_code == 400 and "Wrong password" in response.get_data(as_text=True)
    response = client.post("/consumer/daemon/start", data={"source": "file", "password": "right horse"})
    assert response.status_code == 302
    assert wait_for(lambda: client.get("/api/daemon").get_json()["account"] == address, 30, "daemon")
    assert client.post("/consumer/daemon/stop").status_code == 302


def test_broken_files_are_reported_not_500(client: Any, app: Any) -> None:
    settings = app.extensions["dr"].settings
    Path(settings.bids_file).write_text("{not json")
    html = client.get("/consumer/bids").get_data(as_text=True)
    assert "not valid JSON" in html and "Saving this form replaces the file" in html
    response = client.post("/consumer/daemon/start", data={"source": "file"})
    assert response.status_code == 400 and "Save valid bids first" in response.get_data(as_text=True)
    assert client.get("/api/bids").status_code == 409
    Path(settings.results_file).write_text("[[[")
    response = client.get("/consumer/results")
    assert response.status_code == 200 and "move it aside" in response.get_data(as_text=True)
    assert client.get("/api/results").get_json()["records_error"]


def test_bad_configuration_is_reported_not_500(make_app: Any) -> None:
    client = make_app(csrf=False, POLL_INTERVAL="often", USD_PER_ETH="doubloons").test_client()
    for url in ("/consumer/", "/consumer/results", "/utility/"):
        response = client.get(url)
        assert response.status_code == 200 and "Configuration problem" in response.get_data(as_text=True)
    assert client.get("/api/requests").status_code == 503


# -- the daemon and the whole cycle ----------------------------------------------------------------


def test_one_daemon_per_account(make_app: Any) -> None:
    first = make_app(csrf=False)
    second = make_app(csrf=False)
    a, b = first.test_client(), second.test_client()
    a.post("/consumer/bids", data={"rows-0-kw": "1", "rows-0-price": "0.000005", "save": "1"})
    assert a.post("/consumer/daemon/start", data={"source": "file"}).status_code == 302
    assert wait_for(lambda: a.get("/api/daemon").get_json()["listening"], 30, "listening")
    html = a.post("/consumer/daemon/start", data={"source": "file"}).get_data(as_text=True)
    assert "already running" in html
    response = b.post("/consumer/daemon/start", data={"source": "file"})
    assert response.status_code == 409 and "already running" in response.get_data(as_text=True)
    assert a.post("/consumer/daemon/stop").status_code == 302
    assert a.get("/api/daemon").get_json()["state"] == "stopped"
    assert b.post("/consumer/daemon/start", data={"source": "file"}).status_code == 302
    assert wait_for(lambda: b.get("/api/daemon").get_json()["running"], 30, "second app's daemon")
    b.post("/consumer/daemon/stop")


def test_the_console_shows_a_cli_daemon_and_refuses_a_second(make_app: Any, node: devchain.DevChain,
                                                              contract: str, tmp_path: Path) -> None:
    from daemon_helpers import Daemon

    app = make_app(consumer=2, csrf=False)
    client = app.test_client()
    (tmp_path / "bids.json").write_text('{"version": 1, "bids": [{"kw": 1.0, "price_wei_per_kwh": 5000000000}]}')
    cli = Daemon(["consumer", "run", "--rpc-url", node.url, "--contract", contract, "--account-index", "2",
                  "--bids-file", str(tmp_path / "bids.json"), "--results-file", str(tmp_path / "cli-results.json"),
                  "--state-dir", str(tmp_path / "state")], tmp_path, tmp_path / "cli.log")
    try:
        cli.wait_for("listening for requests")
        status = client.get("/api/daemon").get_json()
        assert status["state"] == "stopped"  # this server's own daemon
        shown = client.get("/api/status").get_json()["daemon"]
        assert shown["state"] == "external" and shown["running"]
        assert shown["external"] == {"pid": cli.process.pid, "daemon": "consumer run",
                                     "started_at": shown["external"]["started_at"]}
        page = client.get("/consumer/").get_data(as_text=True)
        assert 'data-testid="external-daemon"' in page and f"consumer run (pid {cli.process.pid})" in page
        assert 'data-testid="start-daemon"' not in page
        response = client.post("/consumer/daemon/start", data={"source": "file"})
        assert response.status_code == 409
        assert f"already used by consumer run (pid {cli.process.pid})" in response.get_data(as_text=True)
        assert client.get("/api/daemon").get_json()["state"] == "stopped"
    finally:
        assert cli.stop() == 0
    assert client.get("/api/status").get_json()["daemon"]["state"] == "stopped"


def test_full_cycle_bid_settle_withdraw(make_app: Any, node: devchain.DevChain) -> None:
    # START_BLOCK: the daemon starts at the head instead of replaying this module's history.
    head = int(str(node.rpc("eth_blockNumber")), 16)
    # BID_MARGIN=0: these small test bids (0.00008 ETH an hour) would not pay their fees
    app = make_app(consumer=4, csrf=False, AUTO_WITHDRAW="false", START_BLOCK=str(head + 1), BID_MARGIN="0")
    client = app.test_client()
    assert client.post("/consumer/bids", data={"rows-0-kw": "2", "rows-0-price": "0.00004", "rows-1-kw": "2",
                                               "rows-1-price": "0.00006", "save": "1"}).status_code == 302
    assert client.post("/consumer/daemon/start", data={"source": "file"}).status_code == 302
    wait_for(lambda: client.get("/api/daemon").get_json()["listening"], 30, "listening")
    rid = post_request(client, target_kw="3", bidding_s="8")
    bids = wait_for(lambda: client.get(f"/api/requests/{rid}").get_json()["my_bids"], 30, "bids on chain")
    assert [b["watts"] for b in bids] == [2000, 2000] and all(b["tx"].startswith("0x") for b in bids)
    console = client.get("/consumer/").get_data(as_text=True)
    assert bids[0]["tx"][:14] in console
    wait_for(lambda: client.get(f"/api/requests/{rid}").get_json()["state"] == "closed", 30, "deadline")
    assert client.post(f"/utility/requests/{rid}/settle").status_code == 302
    settled = client.get(f"/api/requests/{rid}").get_json()
    assert settled["state"] in ("selected", "settled") and settled["accepted_watts"] == 3000
    assert settled["clearing_price_wei_per_kwh"] == str(60_000 * GWEI)
    stack = client.get(f"/api/requests/{rid}/stack").get_json()
    assert [lvl["watts"] for lvl in stack["levels"]] == [2000, 2000]
    detail = client.get(f"/utility/requests/{rid}").get_data(as_text=True)
    assert "clearing 0.00006 ETH/kWh" in detail and "step accepted" in detail

    def recorded() -> Any:
        history = client.get("/api/results").get_json()["history"]
        row = next(r for r in history["requests"] if r["request"]["id"] == rid)
        return history if row["recorded"] and history["owed_wei"] != "0" else None

    history = wait_for(recorded, 30, "the daemon's claim")
    payout = 3000 * 3600 * 60_000 * GWEI // 3_600_000
    row = next(r for r in history["requests"] if r["request"]["id"] == rid)
    assert row["accepted_watts"] == 3000 and row["promised_wei"] == str(payout)
    assert history["owed_wei"] == str(payout) and history["can_withdraw"]
    assert row["request"]["state"] == "settled" and row["paid_wei"] == str(payout)  # claimed: paid
    page = client.get("/consumer/results").get_data(as_text=True)
    assert 'data-testid="withdraw"' in page and "3 kW" in page
    response = client.post("/consumer/withdraw")
    assert response.status_code == 302
    assert "Withdrew" in client.get("/consumer/results").get_data(as_text=True)
    assert client.get("/api/results").get_json()["history"]["owed_wei"] == "0"
    response = client.post("/consumer/withdraw")
    assert response.status_code == 302
    assert "Nothing to withdraw" in client.get("/consumer/results").get_data(as_text=True)
    client.post("/consumer/daemon/stop")
    records = json.loads(Path(app.extensions["dr"].settings.results_file).read_text())["results"]
    assert any(r["request_id"] == rid and r["accepted_watts"] == 3000 for r in records)


def test_selected_winners_are_not_settled_until_they_are_paid(make_app: Any, node: devchain.DevChain,
                                                              keys: list[str]) -> None:
    client = make_app(csrf=False).test_client()
    rid = post_request(client, target_kw="1", bidding_s="8")
    dr = DemandReduction.at(connect(node.url), client.application.extensions["dr"].chain.session().dr.address)
    bidder = Signer.from_key(dr.w3, keys[5])
    dr.submit_bids(bidder, rid, [1000], [50_000 * GWEI])
    wait_for(lambda: client.get(f"/api/requests/{rid}").get_json()["state"] == "closed", 30, "deadline")
    assert client.post(f"/utility/requests/{rid}/settle").status_code == 302

    row = client.get(f"/api/requests/{rid}").get_json()
    assert (row["state"], row["phase"]) == ("selected", "event")  # paid by claim, nobody claimed
    assert row["promised_wei"] == str(50_000 * GWEI) and row["paid_wei"] == "0"
    page = client.get(f"/utility/requests/{rid}").get_data(as_text=True)
    assert ">settled<" not in page and 'data-testid="request-state">selected<' in page
    assert re.search(r'data-testid="request-paid">0 ETH<', page)
    assert re.search(r'data-testid="request-promised">0\.00005 ETH<', page)

    dr.claim(bidder, rid, [b.bid_id for b in dr.bids_of(rid, bidder.address)])
    row = client.get(f"/api/requests/{rid}").get_json()
    assert (row["state"], row["phase"], row["paid_wei"]) == ("settled", "settled", row["promised_wei"])


def test_utility_withdraws_refunds(make_app: Any) -> None:
    client = make_app(csrf=False).test_client()
    rid = post_request(client, target_kw="1", bidding_s="5")
    wait_for(lambda: client.get(f"/api/requests/{rid}").get_json()["state"] == "closed", 30, "deadline")
    assert client.post(f"/utility/requests/{rid}/settle").status_code == 302
    html = client.get("/utility/").get_data(as_text=True)
    assert "of refunds" in html
    assert client.post("/utility/withdraw").status_code == 302
    assert "Withdrew" in client.get("/utility/").get_data(as_text=True)


# -- sealed bids and settlement on measured delivery --------------------------------------------


def test_preview_api_with_terms(client: Any) -> None:
    base = "/api/utility/preview?target_kw=3&cap=0.000128&bidding_s=60&delay_s=120&duration_s=3600"
    data = client.get(base + "&reveal_s=90&report_s=600&dispute_s=300&bond_eth=0.001").get_json()
    terms = data["terms"]
    assert data["with_terms"] and terms["sealed"] and terms["metered"] and terms["bond_wei"] == str(10**15)
    assert terms["reveal_deadline"] == data["bidding_deadline"] + 90
    assert terms["report_deadline"] == data["event_end"] + 600
    assert terms["dispute_deadline"] == data["event_end"] + 900
    plain = client.get(base).get_json()
    assert not plain["with_terms"] and plain["terms"]["reveal_deadline"] is None
    for query in ("&reveal_s=121", "&reveal_s=-1", "&dispute_s=5", "&bond_eth=1", "&bond_eth=x", "&report_s=1e3",
                  "&bond_eth=1e999999999&report_s=5", "&report_s=99999999999"):
        response = client.get(base + query)
        assert response.status_code == 400 and response.get_json()["error"].startswith("cannot preview"), query


def test_form_preview_shows_the_deadlines(client: Any) -> None:
    html = client.post("/utility/requests", data={
        "target_kw": "3", "bidding_s": "60", "delay_s": "120", "duration_s": "3600", "cap": CAP,
        "rule": "uniform", "reveal_s": "90", "report_s": "600", "dispute_s": "300", "bond_eth": "0.001",
        "preview": "1"}).get_data(as_text=True)
    assert "sealed bids, paid on metered delivery; bond 0.001 ETH" in html
    for testid in ("preview-reveal", "preview-report", "preview-dispute"):
        assert re.search(rf'data-testid="{testid}">\d\d:\d\d:\d\d<', html), testid


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devchain.DevChain]:
    """Its own chain: this test moves the clock forward, which the shared ganache must not see."""
    chain = devchain.start("anvil", accounts=6, log_path=tmp_path_factory.mktemp("anvil") / "anvil.log")
    yield chain
    chain.stop()


def test_sealed_metered_request_through_the_dashboard(anvil: devchain.DevChain, tmp_path: Path) -> None:
    from demand_response import market
    from demand_response.contract import Stage

    keys = devchain.dev_private_keys(6, "anvil")
    w3 = connect(anvil.url)
    signers = [Signer.from_key(w3, k) for k in keys]
    dr = DemandReduction.deploy(signers[0])
    app = create_app({
        "TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "t", "RPC_URL": anvil.url,
        "CONTRACT_ADDRESS": dr.address, "UTILITY_PRIVATE_KEY": keys[0], "CONSUMER_PRIVATE_KEY": keys[1],
        "BIDS_FILE": str(tmp_path / "bids.json"), "RESULTS_FILE": str(tmp_path / "results.json"),
        "STATE_DIR": str(tmp_path / "state"), "DR_ENV_FILE": str(tmp_path / "missing.env"),
        "DEPLOYMENTS_FILE": str(tmp_path / "deployments.json"), "START_BLOCK": "0",
        "WEB_AUTH": "off"})
    client = app.test_client()

    def travel_past(deadline: int) -> None:
        """Move the chain's clock just past ``deadline``."""
        latest = int(w3.eth.get_block("latest")["timestamp"])
        anvil.rpc("evm_increaseTime", [max(0, deadline + 1 - latest)])
        anvil.rpc("evm_mine", [])

    def api() -> dict[str, Any]:
        return client.get(f"/api/requests/{rid}").get_json()

    # Nothing is posted for an impossible combination.
    response = client.post("/utility/requests", data={
        "target_kw": "3", "bidding_s": "30", "delay_s": "60", "duration_s": "60", "cap": CAP,
        "rule": "uniform", "reveal_s": "61", "report_s": "60", "post": "1"})
    assert response.status_code == 400 and "would end after the event starts" in response.get_data(as_text=True)
    assert dr.request_count() == 0

    rid = post_request(client, bidding_s="30", delay_s="60", duration_s="60", reveal_s="30", report_s="60",
                       dispute_s="60", bond_eth="0.001")
    info = dr.get_request(rid)
    on_chain = dr.terms_of(rid)
    assert on_chain.sealed and on_chain.metered and on_chain.bond_wei == 10**15
    row = api()
    assert row["phase"] == "bidding" and row["terms"] == {
        "sealed": True, "metered": True, "reveal_deadline": info.bidding_deadline + 30,
        "report_deadline": info.event_end + 60, "dispute_deadline": info.event_end + 120,
        "bond_wei": str(10**15), "display": row["terms"]["display"]}
    console = client.get("/consumer/").get_data(as_text=True)
    assert f'data-testid="sealed-{rid}"' in console and f'data-testid="metered-{rid}"' in console
    assert re.search(rf'data-testid="phase-{rid}"[^>]*>bidding<', console)
    page = client.get(f"/utility/requests/{rid}").get_data(as_text=True)
    assert 'data-testid="request-phase">bidding<' in page and 'data-testid="reveal-deadline"' in page

    # Three consumers commit (with the bond) and reveal; the third bids above the clearing price.
    offers = {1: ([2000], [10 * 10**12]), 2: ([1000], [20 * 10**12]), 3: ([500], [30 * 10**12])}
    salts = {i: bytes([i]) * 32 for i in offers}
    for i, (watts, prices) in offers.items():
        commitment = market.commitment(w3.eth.chain_id, dr.address, rid, signers[i].address, watts, prices, salts[i])
        dr.commit_bids(signers[i], rid, commitment, bond=10**15)
    travel_past(info.bidding_deadline)
    assert api()["phase"] == "revealing"
    response = client.post(f"/utility/requests/{rid}/settle")
    assert response.status_code == 409 and "revealed until" in response.get_data(as_text=True)
    for i, (watts, prices) in offers.items():
        dr.reveal_bids(signers[i], rid, watts, prices, salts[i])
    travel_past(info.bidding_deadline + 30)
    assert api()["phase"] == "selecting"
    assert client.post(f"/utility/requests/{rid}/settle").status_code == 302
    assert api()["phase"] == "scheduled"
    travel_past(info.event_end - 1)
    assert api()["phase"] == "reporting"

    c1, c2, c3 = (signers[i].address for i in (1, 2, 3))
    dr.report_delivery(signers[1], rid, 2000)
    dr.report_delivery(signers[2], rid, 1000)
    page = client.get(f"/utility/requests/{rid}").get_data(as_text=True)
    assert 'data-testid="delivery"' in page
    for who in (c1, c2):
        assert f'data-testid="confirm-{who}"' in page and f'data-testid="dispute-{who}"' in page
    assert f'data-testid="settle-{c3}"' in page  # nothing accepted: settles at once
    promised = {who: dr.participant_of(rid, who).promised_payout for who in (c1, c2)}
    assert promised[c2] == market.payout(1000, 60, 20 * 10**12)

    # A dispute must be below the report: a one-line error, nothing sent.
    response = client.post(f"/utility/requests/{rid}/delivery/dispute", data={"consumer": c2, "metered_kw": "1"})
    html = response.get_data(as_text=True)
    assert response.status_code == 409 and "Dispute failed: a dispute must be below the consumer&#39;s report" in html
    response = client.post(f"/utility/requests/{rid}/delivery/dispute", data={"consumer": c2})
    assert response.status_code == 400 and "enter the metered reduction" in response.get_data(as_text=True)
    response = client.post(f"/utility/requests/{rid}/delivery/confirm", data={"consumer": "0x123"})
    assert response.status_code == 400 and "Not an Ethereum address" in response.get_data(as_text=True)
    assert dr.participant_of(rid, c2).stage == Stage.REPORTED

    assert client.post(f"/utility/requests/{rid}/delivery/dispute",
                       data={"consumer": c2, "metered_kw": "0.5"}).status_code == 302
    assert client.post(f"/utility/requests/{rid}/delivery/confirm", data={"consumer": c1}).status_code == 302
    assert client.post(f"/utility/requests/{rid}/delivery/settle", data={"consumer": c3}).status_code == 302
    response = client.post(f"/utility/requests/{rid}/delivery/confirm", data={"consumer": c1})
    assert response.status_code == 409 and "is at stage &#39;settled&#39;" in response.get_data(as_text=True)

    page = client.get(f"/utility/requests/{rid}").get_data(as_text=True)
    rows = {who: page[page.find(f'data-testid="participant-{who}"'):].split("</tr>")[0] for who in (c1, c2, c3)}
    expected = market.settle_delivery(1000, promised[c2], 500, 10**15)
    assert expected.payout == promised[c2] // 2 and expected.penalty == 10**15 // 2
    assert ">settled<" in rows[c1] and ">settled<" in rows[c2] and ">settled<" in rows[c3]
    assert "2 kW" in rows[c1] and f">{fmt_eth(promised[c1])}<" in rows[c1]
    assert "disputed" in rows[c2] and "0.5 kW" in rows[c2] and "1 kW" in rows[c2]
    assert f">{fmt_eth(expected.payout)}<" in rows[c2] and f"penalty {fmt_eth(expected.penalty)}" in rows[c2]
    assert "data-testid=\"confirm-" not in page and "data-testid=\"dispute-0x" not in page
    assert 'data-testid="request-phase">settled<' in page  # every accepted watt settled
    assert api()["phase"] == "settled"
    history = client.get("/utility/").get_data(as_text=True)
    assert re.search(rf'data-testid="history-phase-{rid}"[^>]*>settled<', history)

    # The consumer's results show promised vs delivered vs paid from results.json records.
    Path(tmp_path / "results.json").write_text(json.dumps({"version": 1, "results": [{
        "request_id": rid, "account": c1, "contract": dr.address, "chain_id": w3.eth.chain_id, "status": "settled",
        "accepted_watts": 2000, "payout_wei": str(promised[c1]), "promised_payout_wei": str(promised[c1]),
        "delivered_watts": 2000, "penalty_wei": "0", "bond_returned_wei": str(10**15),
        "paid_wei": str(promised[c1]),
        # Issue 17: the household's own check of the utility's metered figure.
        "metered_watts": 300, "recomputed_watts": 500, "difference_watts": 200, "delivery_agrees": False,
        "delivery_check": "meter-before-after: published 300 W, recomputed 500 W (+200 W, tolerance 50 W): "
                          "DISAGREES"}]}))
    results = client.get("/consumer/results").get_data(as_text=True)
    assert f'data-testid="record-paid-{rid}">{fmt_eth(promised[c1])}<' in results
    assert "Promised" in results and "Delivered" in results and "Bond back" in results
    assert re.search(rf'data-testid="record-check-{rid}" class="warn"[^>]*>DISAGREES: utility 0.3 kW, our meter 0.5 kW<',
                     results)
    checked = client.get("/api/results").get_json()["records"][0]
    assert (checked["metered_watts"], checked["recomputed_watts"], checked["delivery_agrees"]) == (300, 500, False)
    assert "metered · settled" in results

    # Gross, gas and net: from the record's gas_wei and net_wei (wconsumer's daemon writes them).
    gas = 3 * 21_000 * 10**9
    records_doc = json.loads(Path(tmp_path / "results.json").read_text())
    records_doc["results"][0].update(gas_wei=str(gas), net_wei=str(promised[c1] - gas))
    Path(tmp_path / "results.json").write_text(json.dumps(records_doc))
    results = client.get("/consumer/results").get_data(as_text=True)
    assert f'data-testid="gas-{rid}">{fmt_eth(gas)}<' in results
    assert f'data-testid="net-{rid}">{fmt_eth(promised[c1] - gas)}<' in results
    assert f'data-testid="total-net">{fmt_eth(promised[c1] - gas)}<' in results
    api_row = client.get("/api/results").get_json()["history"]["requests"][0]
    assert (api_row["paid_wei"], api_row["gas_wei"], api_row["net_wei"]) == (
        str(promised[c1]), str(gas), str(promised[c1] - gas))

    # Measured delivery: records published by the utility (demand_response.mv.records) show as
    # baseline-against-metered charts on the request page and the household's results, and in the API.
    from demand_response.mv import compute, fingerprint
    from demand_response.mv.records import build_record, series_of, write_record

    records_dir = app.extensions["dr"].settings.records_dir
    t0 = 1752451200
    readings = [(t0 + i * 900, 900, 250) for i in range(8)] + [(t0 + (8 + i) * 900, 900, 125) for i in range(4)]
    result = compute("meter-before-after", readings, t0 + 7200, t0 + 10800)
    for who in (c1, c2):
        fp = fingerprint(who, result, readings)
        write_record(records_dir, w3.eth.chain_id, dr.address, rid, who,
                     build_record(fp, series_of(result), chain_id=w3.eth.chain_id, contract=dr.address,
                                  request_id=rid, address=who))
    delivery = client.get(f"/api/requests/{rid}/delivery").get_json()
    assert [r["address"].lower() for r in delivery["records"]] == sorted([c1.lower(), c2.lower()])
    first = delivery["records"][0]
    assert (first["baseline_wh"], first["metered_wh"], first["delivered_watts"]) == (1000, 500, 500)
    assert first["method"] == "meter-before-after" and first["data_hash"].startswith("0x")
    assert first["intervals"][0] == [t0 + 7200, 900, 250, 125] and "chart" not in first
    assert client.get("/api/requests/999/delivery").status_code == 404
    page = client.get(f"/utility/requests/{rid}").get_data(as_text=True)
    assert "Measured delivery" in page and page.count('class="chart delivery-chart"') == 2
    assert first["data_hash"] in page and 'class="baseline"' in page and 'class="metered"' in page
    results = client.get("/consumer/results").get_data(as_text=True)
    assert "Your measured delivery" in results and results.count('class="chart delivery-chart"') == 1
    assert f'data-testid="measured-{c1.lower()}"' in results and f'data-testid="measured-{c2.lower()}"' not in results


def test_the_bid_form_warns_about_an_offer_that_cannot_pay_for_taking_part(client: Any) -> None:
    """The node's fee quote prices a household's event (bid, claim, withdraw); an offer whose
    payout at its own price is less is flagged with fees.worth_bidding's reason, and saving still works."""
    data = {"rows-0-kw": "1", "rows-0-price": "0.000001", "rows-1-kw": "4000", "rows-1-price": "0.01", "save": "1"}
    assert client.post("/consumer/bids", data=data).status_code == 302
    page = client.get("/consumer/bids").get_data(as_text=True)
    assert 'data-testid="participation-cost"' in page and f"1 transaction, {fees.plan_gas('open'):,} gas" in page
    warning = re.search(r'data-testid="not-worth-0">([^<]+)<', page)
    assert warning and "pays 0.000001 ETH at its ask, but taking part costs" in warning.group(1)
    assert 'data-testid="not-worth-1"' not in page  # 4 MW for an hour at 0.01 ETH/kWh pays


def test_the_bid_form_flags_nothing_when_the_utilitys_relay_pays_the_gas(make_app: Any) -> None:
    """With RELAY_URL the daemon's open bids go through the utility's relay, which pays their
    gas, and the daemon skips the fee check: the form says so and flags no offer."""
    client = make_app(csrf=False, RELAY_URL="http://127.0.0.1:8546").test_client()
    data = {"rows-0-kw": "1", "rows-0-price": "0.000001", "save": "1"}
    assert client.post("/consumer/bids", data=data).status_code == 302
    page = client.get("/consumer/bids").get_data(as_text=True)
    assert "Your bids go through the utility&#39;s relay (RELAY_URL)" in page or \
        "Your bids go through the utility's relay (RELAY_URL)" in page
    assert "taking part costs you nothing" in page and f"{fees.plan_gas('open'):,} gas" in page  # its fallback
    assert 'data-testid="not-worth-0"' not in page
