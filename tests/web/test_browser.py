"""End to end in headless Chromium (Playwright) against the web app and a live ganache.

Two servers, as deployed: a consumer console (DR_ROLE=consumer) and a utility dashboard
(DR_ROLE=utility), each with its own account. The story: enter bids, start the daemon, a
request arrives and counts down, the daemon bids, the utility settles, the results page
shows the accepted kW and payout and withdraw works, the bid stack shows the bids.
Screenshots of the main pages are taken on every run, into a temporary folder; `make
screenshots` (DR_SCREENSHOT_DIR=docs/img) refreshes the committed ones in docs/img/ui-*.png.

Skipped, with the reason, when Chromium or Playwright is missing; ``make test`` installs both.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"Chromium is not installed ({CHROMIUM}); `apt-get install -y chromium` or `make test` installs it",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")
pytest.importorskip("flask_wtf")

from werkzeug.serving import make_server  # noqa: E402

from demand_response import devchain  # noqa: E402
from demand_response.chain import Signer, connect  # noqa: E402
from demand_response.contract import DemandReduction  # noqa: E402
from flaskapp import create_app  # noqa: E402
from flaskapp.daemon import stop_all  # noqa: E402
from demand_response import fees  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("DR_SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="dr-screenshots-"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
        "--disable-dev-shm-usage"]
WAIT = 60_000  # ms: generous, the machine is shared


class Server:
    """A Flask app served by werkzeug in a thread on a free port."""

    def __init__(self, app: Any) -> None:
        self.port = devchain.free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("browser")
    node = devchain.start("ganache", accounts=4, balance_eth=1000, log_path=tmp / "ganache.log")
    servers: list[Server] = []
    try:
        keys = devchain.dev_private_keys(4)
        contract = DemandReduction.deploy(Signer.from_key(connect(node.url), keys[0])).address
        common = {"RPC_URL": node.url, "CONTRACT_ADDRESS": contract, "DR_ENV_FILE": str(tmp / "missing.env"),
                  "DEPLOYMENTS_FILE": str(tmp / "deployments.json"), "POLL_INTERVAL": "0.2", "DR_REFRESH_MS": "1000",
                  "WEB_AUTH": "off"}  # loopback only; signing in through the page: test_sign_in_* below
        consumer_app = create_app({**common, "DR_ROLE": "consumer", "CONSUMER_PRIVATE_KEY": keys[1],
                                   "BIDS_FILE": str(tmp / "bids.json"), "RESULTS_FILE": str(tmp / "results.json"),
                                   "STATE_DIR": str(tmp / "state"), "AUTO_WITHDRAW": "false",
                                   "BID_MARGIN": "0"})  # the story's small bids would not pay their fees
        utility_app = create_app({**common, "DR_ROLE": "utility", "UTILITY_PRIVATE_KEY": keys[0],
                                  "STATE_DIR": str(tmp / "ustate")})
        servers = [Server(consumer_app), Server(utility_app)]
        yield {"consumer": servers[0].url, "utility": servers[1].url, "consumer_app": consumer_app, "tmp": tmp,
               "rpc": node.url, "contract": contract}
    finally:
        stop_all()
        for server in servers:
            server.stop()
        node.stop()


@pytest.fixture(scope="module")
def browser(stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 900}, device_scale_factor=1,
        )
        context.set_default_timeout(WAIT)
        yield context
        context.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"ui-{name}.png"), full_page=True)


def test_bid_request_settle_withdraw_in_a_browser(stack: dict[str, Any], browser: Any) -> None:
    expect = sync_api.expect
    expect.set_options(timeout=WAIT)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # JavaScript errors only: a form answered with 400 (a validation error) is logged as a
    # failed resource load, which is expected here.
    page.on("console", lambda msg: errors.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text else None)

    # 1. Enter bids in the form (one row added by the page's script).
    page.goto(stack["consumer"] + "/consumer/bids")
    page.fill("#rows-0-kw", "1.5")
    page.fill("#rows-0-price", "0.00004")
    page.click("#add-row")
    page.locator("[data-row] input[name$='-kw']").nth(1).fill("2")
    page.locator("[data-row] input[name$='-price']").nth(1).fill("0.00007")
    expect(page.locator("#curve svg desc")).to_contain_text("3.5 kW offered")
    page.click("#save-bids")
    expect(page.locator(".flash-ok")).to_contain_text("Saved 2 bid(s)")
    shot(page, "bids")

    # A validation error shows next to its field.
    page.fill("#rows-0-kw", "-1")
    page.click("#save-bids")
    expect(page.locator("#rows-0-kw-err")).to_contain_text("Between 0.001 and")
    page.goto(stack["consumer"] + "/consumer/bids")
    expect(page.locator("#rows-0-kw")).to_have_value("1.5")

    # 2. Start the daemon from the page.
    page.goto(stack["consumer"] + "/consumer/")
    page.click("[data-testid=start-daemon]")
    expect(page.locator("[data-testid=daemon-state]")).to_have_text("listening")

    # 3. A utility request arrives; the countdown shows.
    utility = browser.new_page()
    utility.bring_to_front()
    utility.goto(stack["utility"] + "/utility/")
    utility.fill("#target_kw", "3")
    utility.fill("#bidding_s", "25")
    utility.fill("#duration_s", "3600")
    utility.fill("#cap", "0.000128")
    expect(utility.locator("#preview-box")).to_contain_text("Payout preview")
    shot(utility, "utility-new")
    utility.click("[data-testid=post-request]")
    expect(utility.locator(".flash-ok")).to_contain_text("Posted request 1")

    page.bring_to_front()  # a background tab does not poll
    request = page.locator("[data-testid=request-1]")
    expect(request).to_be_visible()
    expect(request.locator(".countdown")).to_contain_text(re.compile(r"\d+:\d\d left to bid"))

    # 4. The daemon's bids are submitted, with their transaction hashes.
    expect(page.locator("[data-testid=my-bids-1] tbody tr")).to_have_count(2)
    expect(page.locator("[data-testid=my-bids-1]")).to_contain_text("0x")
    expect(page.locator("[data-testid=last-event]")).to_contain_text("ReductionRequested")
    shot(page, "console")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "console-phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    # 7 (live). The utility's bid stack shows the bids while bidding is open.
    utility.bring_to_front()
    utility.goto(stack["utility"] + "/utility/requests/1")
    expect(utility.locator("[data-testid=bid-count]")).to_contain_text("2")
    expect(utility.locator("[data-testid=bid-stack] svg rect.step")).to_have_count(2)

    # 5. Settlement: the settle button once bidding has closed.
    expect(utility.locator("[data-testid=request-state]")).to_have_text("closed", timeout=90_000)
    utility.click("[data-testid=settle]")
    expect(utility.locator(".flash-ok")).to_contain_text("Winners of request 1 selected at 0.00007 ETH/kWh")
    expect(utility.locator("[data-testid=clearing-price]")).to_have_text("0.00007 ETH/kWh")
    expect(utility.locator("[data-testid=request-phase]")).to_have_text(re.compile("event|settled"))  # lifecycle, chain time
    expect(utility.locator("[data-testid=bid-stack] svg rect.step.accepted")).to_have_count(2)
    shot(utility, "utility-stack")
    utility.goto(stack["utility"] + "/utility/")
    expect(utility.locator("[data-testid=utility-history]")).to_contain_text("settled")
    shot(utility, "utility")
    utility.set_viewport_size({"width": 390, "height": 844})
    shot(utility, "utility-phone")

    # 6. Results: accepted kW and payout (the daemon claims), then withdraw.
    page.bring_to_front()
    page.goto(stack["consumer"] + "/consumer/results")
    expect(page.locator("[data-testid=accepted-1]")).to_have_text("3 kW")
    expect(page.locator("[data-testid=payout-1]")).to_contain_text("0.00021 ETH")  # 3 kW x 1 h x 0.00007 ETH/kWh
    withdraw = page.locator("[data-testid=withdraw]")
    expect(withdraw).to_be_visible()
    shot(page, "results")
    withdraw.click()
    expect(page.locator(".flash-ok")).to_contain_text("Withdrew 0.00021 ETH")
    expect(page.locator("[data-testid=owed]")).to_have_text("0 ETH")
    expect(page.locator("[data-testid=withdraw]")).to_have_count(0)

    # The daemon stops from the page too.
    page.goto(stack["consumer"] + "/consumer/")
    page.click("[data-testid=stop-daemon]")
    expect(page.locator("[data-testid=daemon-state]")).to_have_text("stopped")
    assert not errors, errors


def _invalid_fields(page: Any) -> dict[str, str]:
    """``{accessible name: invalid value}`` of every form field Chromium's accessibility tree
    marks invalid (the tree assistive technology reads, through the DevTools protocol)."""
    cdp = page.context.new_cdp_session(page)
    try:
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        cdp.detach()
    out = {}
    for node in nodes:
        for prop in node.get("properties", []):
            if prop["name"] == "invalid" and prop["value"].get("value") not in (None, "false"):
                out[(node.get("name") or {}).get("value", "?")] = prop["value"]["value"]
    return out


def test_valid_form_fields_are_not_invalid_in_the_accessibility_tree(stack: dict[str, Any], browser: Any) -> None:
    page = browser.new_page()
    for url in (stack["consumer"] + "/consumer/bids", stack["consumer"] + "/consumer/",
                stack["utility"] + "/utility/"):
        page.goto(url)
        assert page.locator("input").count() > 1
        assert page.locator("[aria-invalid=None], [aria-describedby=None]").count() == 0, url
        assert _invalid_fields(page) == {}, url
    # A field with an error is announced invalid, and only that one.
    page.goto(stack["utility"] + "/utility/")
    page.fill("#target_kw", "-1")
    page.click("#preview")
    sync_api.expect(page.locator("#target_kw")).to_have_attribute("aria-invalid", "true")
    assert list(_invalid_fields(page).values()) == ["true"]
    page.close()


def _publish_records(stack: dict[str, Any], request_id: int, winners: list[str]) -> None:
    """Delivery records as the utility daemon publishes them (demand_response.mv.records), in both
    servers' RECORDS_DIR: two flat hours of 15-minute readings, then a 1-hour event at about half load."""
    from demand_response.mv import compute, fingerprint
    from demand_response.mv.records import build_record, series_of, write_record

    session = stack["consumer_app"].extensions["dr"].chain.session()
    t0 = 1752451200
    for n, who in enumerate(winners):
        readings = ([(t0 + i * 900, 900, 250 + 10 * (i % 3)) for i in range(8)]
                    + [(t0 + (8 + i) * 900, 900, 110 + 20 * n + 15 * i) for i in range(4)])
        result = compute("meter-before-after", readings, t0 + 7200, t0 + 10800)
        record = build_record(fingerprint(who, result, readings), series_of(result), chain_id=session.chain_id,
                              contract=session.dr.address, request_id=request_id, address=who)
        for folder in ("state", "ustate"):
            write_record(stack["tmp"] / folder / "delivery-records", session.chain_id, session.dr.address,
                         request_id, who, record)


def test_money_gas_and_measured_delivery_in_a_browser(stack: dict[str, Any], browser: Any) -> None:
    """The pages people look at for issue 15 and 17: the bid form's "does not pay" warning, the
    results page's gross / gas / net, and baseline-against-metered charts from published records."""
    expect = sync_api.expect
    expect.set_options(timeout=WAIT)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # A metered request (report window), bid on by the console's account and one other household.
    utility = browser.new_page()
    utility.goto(stack["utility"] + "/utility/")
    utility.fill("#target_kw", "3")
    utility.fill("#bidding_s", "600")
    utility.fill("#duration_s", "3600")
    utility.fill("#cap", "0.000128")
    utility.fill("#report_s", "600")
    utility.click("[data-testid=post-request]")
    expect(utility.locator(".flash-ok")).to_contain_text("Posted request")
    rid = int(utility.url.rstrip("/").split("/")[-1])
    keys = devchain.dev_private_keys(4)
    session = stack["consumer_app"].extensions["dr"].chain.session()
    households = [Signer.from_key(session.w3, keys[i]) for i in (1, 2)]
    for signer, price in zip(households, (40 * 10**12, 60 * 10**12)):
        session.dr.submit_bids(signer, rid, [1500], [price])
    _publish_records(stack, rid, [h.address for h in households])

    # The utility's request page: one chart per winner, with the method and the data hash.
    utility.goto(stack["utility"] + f"/utility/requests/{rid}")
    expect(utility.locator("svg.delivery-chart")).to_have_count(2)
    expect(utility.locator("[data-testid=measured-method]").first).to_contain_text("meter-before-after")
    expect(utility.locator("[data-testid=measured-hash]").first).to_contain_text("0x")
    shot(utility, "utility-delivery")

    # The bid form: an offer that cannot pay for its transactions is flagged with the reason.
    page.goto(stack["consumer"] + "/consumer/bids")
    page.fill("#rows-0-kw", "0.13")
    page.fill("#rows-0-price", "0.00004")
    page.click("#save-bids")
    expect(page.locator("[data-testid=participation-cost]")).to_contain_text(f"2 transactions, {fees.plan_gas('metered'):,} gas")  # bond, bid: the utility meters
    expect(page.locator("[data-testid=not-worth-0]")).to_contain_text("at its ask, but taking part costs")
    shot(page, "bids-warning")

    # The results page: gross, gas and net (unknown until the record has a gas figure), and
    # the household's own measured delivery only.
    page.goto(stack["consumer"] + "/consumer/results")
    expect(page.locator(f"[data-testid=gas-{rid}]")).to_have_text("—")
    expect(page.locator("svg.delivery-chart")).to_have_count(1)
    expect(page.locator(f"[data-testid=measured-{households[0].address.lower()}]")).to_be_visible()
    shot(page, "results-delivery")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "results-delivery-phone")
    assert not errors, errors
    page.close()
    utility.close()


def test_sign_in_to_the_production_server_with_a_user_made_by_the_command(stack: dict[str, Any], browser: Any,
                                                                          tmp_path: Path) -> None:
    """A fresh app: the first user made with `dr web user add`, ./run_flask.sh (gunicorn, two
    workers, sign-in on), then signing in, a wrong password, and signing out in the page."""
    import signal
    import subprocess
    import sys
    import urllib.request

    from daemon_helpers import dr_env, wait_until

    expect = sync_api.expect
    (tmp_path / ".env").write_text(f"RPC_URL={stack['rpc']}\nCONTRACT_ADDRESS={stack['contract']}\n"
                                   f"STATE_DIR={tmp_path / 'state'}\nDR_ROLE=both\n")
    port = devchain.free_port()
    env = dr_env(DR_ENV_FILE=str(tmp_path / ".env"), FLASK_RUN_PORT=str(port), WEB_WORKERS="2",
                 FLASK_SECRET_KEY="browser-test-key", WEB_ACCESS_LOG="")
    made = subprocess.run([sys.executable, "-m", "demand_response", "web", "user", "add", "ops", "--role", "operator",
                           "--password-file", "-"], input="a long operator password\n", env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and "added ops (operator)" in made.stdout, made.stderr
    log = open(tmp_path / "web.log", "wb")
    server = subprocess.Popen([str(ROOT / "run_flask.sh")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return urllib.request.urlopen(url + "/api/health", timeout=2).status == 200
        except OSError:
            return server.poll() is not None
    try:
        wait_until(answers, 90, what="gunicorn")
        assert server.poll() is None, (tmp_path / "web.log").read_text()
        page = browser.new_page()
        page.goto(url + "/utility/")
        expect(page).to_have_url(re.compile(r"/login\?next=/utility/$"))
        page.fill("#name", "ops")
        page.fill("#password", "not the password")
        page.click("button[type=submit]")
        expect(page.locator("[data-testid=login-problem]")).to_have_text("Wrong user name or password.")
        page.fill("#name", "ops")
        page.fill("#password", "a long operator password")
        page.click("button[type=submit]")
        expect(page).to_have_url(url + "/utility/")
        expect(page.locator("[data-testid=signed-in-as]")).to_have_text("ops · operator")
        for _ in range(4):  # two workers: the session is the same in each
            page.reload()
            expect(page.locator("[data-testid=signed-in-as]")).to_have_text("ops · operator")
        shot(page, "signed-in")
        page.click("text=Sign out")
        expect(page).to_have_url(re.compile(r"/login$"))
        page.goto(url + "/utility/")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        page.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()
    text = (tmp_path / "web.log").read_text()
    assert "Starting gunicorn" in text and "a long operator password" not in text
