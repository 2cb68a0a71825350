"""The utility dashboard's request form in a stablecoin, in headless Chromium against anvil.

A real anvil chain with the market and the 6-decimal TestUSD (TUSD) deployed, the utility
minted 30 TUSD, the dashboard (``SETTLEMENT_TOKEN`` set, sign-in on) served on loopback. The
operator signs in in the page, fills the form in TUSD ("25" TUSD budget, "0.384" TUSD/kWh cap)
and posts; the chain then holds the request in the token with its budget in base units, and
the page shows it in TUSD. A sealed request in TUSD posts without a bond (a bond, ether only,
is refused in one line). Wrong money (a budget above the balance, a price with more decimals
than the token has) is one line in the page and nothing on chain. A request nobody bid on
owes its budget back in TUSD, which the dashboard withdraws.

Reuses test_browser.py's Chromium settings and server (skipped like it without Chromium).
"""

from __future__ import annotations

import io
import sys
from typing import Any, Iterator

import pytest

from test_browser import ARGS, CHROMIUM, WAIT, Server, sync_api

from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.cli import main as dr
from demand_response.contract import DemandReduction
from demand_response.token import Erc20, deploy_test_usd, mint_test_usd
from flaskapp import create_app

pytestmark = pytest.mark.browser

PASSWORD = "an operator's long password"
MINTED = 30 * 10**6  # 30 TUSD


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, start_chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """anvil, the market, TestUSD with 30 TUSD minted to the utility, and the dashboard in TUSD."""
    tmp = tmp_path_factory.mktemp("token-form")
    node = start_chain(request, "anvil", accounts=3)
    keys = devchain.dev_private_keys(3, "anvil")
    utility = Signer.from_key(connect(node.url), keys[0])
    market = DemandReduction.deploy(utility)
    usd = deploy_test_usd(utility)
    mint_test_usd(utility, usd.address, utility.address, MINTED)
    db = tmp / "users.sqlite3"
    args = ["web", "user", "add", "olga", "--role", "operator", "--password-file", "-"]
    stdin, sys.stdin = sys.stdin, io.StringIO(PASSWORD + "\n")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("WEB_USERS_DB", str(db))
            mp.setenv("DR_ENV_FILE", str(tmp / "none.env"))
            assert dr(args) == 0
    finally:
        sys.stdin = stdin
    app = create_app({"RPC_URL": node.url, "CONTRACT_ADDRESS": market.address, "DR_ROLE": "utility",
                      "UTILITY_PRIVATE_KEY": keys[0], "SETTLEMENT_TOKEN": usd.address, "WEB_USERS_DB": str(db),
                      "STATE_DIR": str(tmp / "state"), "DR_ENV_FILE": str(tmp / "none.env"),
                      "DEPLOYMENTS_FILE": str(tmp / "deployments.json"), "SECRET_KEY": "token-form-test-key"})
    server = Server(app)
    yield {"url": server.url, "market": market, "usd": usd, "utility": utility.address, "w3": utility.w3}
    server.stop()


@pytest.fixture(scope="module")
def page(site: dict[str, Any]) -> Iterator[Any]:
    """A Chromium page signed in as the operator through the sign-in form."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(WAIT)
        sync_api.expect.set_options(timeout=WAIT)
        tab = context.new_page()
        tab.goto(site["url"] + "/login?next=/utility/")
        tab.fill("#name", "olga")
        tab.fill("#password", PASSWORD)
        tab.click("button[type=submit]")
        sync_api.expect(tab.locator("[data-testid=signed-in-as]")).to_have_text("olga · operator")
        yield tab
        context.close()
        browser.close()


def _fill(page: Any, url: str, cap: str, budget: str) -> None:
    page.goto(url + "/utility/")
    page.fill("#target_kw", "2")
    page.fill("#bidding_s", "600")
    page.fill("#duration_s", "3600")
    page.fill("#cap", cap)
    page.fill("#budget_eth", budget)


def _chain_state(site: dict[str, Any]) -> tuple[int, int, int]:
    """(requests, the utility's TUSD, the market's allowance from the utility)."""
    usd: Erc20 = site["usd"]
    return (site["market"].request_count(), usd.balance_of(site["utility"]),
            usd.allowance(site["utility"], site["market"].address))


def test_the_form_reads_in_tusd_and_posts_a_request_escrowed_in_tusd_base_units(site: dict[str, Any],
                                                                                page: Any) -> None:
    expect = sync_api.expect
    page.goto(site["url"] + "/utility/")
    expect(page.locator("label[for=cap]")).to_contain_text("Price cap (TUSD/kWh)")
    expect(page.locator("label[for=budget_eth]")).to_contain_text("Budget (TUSD, optional)")
    expect(page.locator("label[for=bond_eth]")).to_contain_text("(ETH)")  # bonds are ether only

    _fill(page, site["url"], "0.384", "25")
    page.click("#preview")
    expect(page.locator("#preview-box")).to_contain_text("25 TUSD")
    expect(page.locator("#preview-box")).to_contain_text("0.384 TUSD/kWh")
    eth_before = site["w3"].eth.get_balance(site["market"].address)
    page.click("[data-testid=post-request]")
    expect(page.locator(".flash-ok")).to_contain_text("Posted request 1")

    info = site["market"].get_request(1)
    assert info.in_token and info.token == site["usd"].address
    assert info.budget == 25_000_000 and info.max_price == 384_000 and info.target_watts == 2000
    assert site["usd"].balance_of(site["market"].address) == 25_000_000
    assert site["usd"].balance_of(site["utility"]) == MINTED - 25_000_000
    assert site["w3"].eth.get_balance(site["market"].address) == eth_before  # no ether escrowed

    # The request's page and the dashboard's history show it in TUSD, never in ETH.
    expect(page.locator("dt:text-is('Price cap') + dd")).to_contain_text("0.384 TUSD/kWh")
    expect(page.locator("dt:text-is('Budget') + dd")).to_have_text("25 TUSD")
    page.goto(site["url"] + "/utility/")
    history = page.locator("[data-testid=utility-history]")
    expect(history).to_contain_text("#1")
    expect(page.locator("[data-testid=history-total]")).to_have_text("Total in TUSD")
    expect(history.locator("tfoot")).to_contain_text("0/1 settled")  # the TUSD request is counted
    assert " ETH" not in history.inner_text()  # not an ETH total of no requests


def test_a_sealed_request_in_tusd_is_posted_from_the_form_without_a_bond(site: dict[str, Any], page: Any) -> None:
    expect = sync_api.expect
    _fill(page, site["url"], "0.384", "2")
    page.fill("#delay_s", "120")
    page.fill("#reveal_s", "60")
    page.click("[data-testid=post-request]")
    expect(page.locator(".flash-ok")).to_contain_text("sealed")
    rid = int(page.url.rstrip("/").split("/")[-1])
    info, terms = site["market"].get_request(rid), site["market"].terms_of(rid)
    assert info.in_token and info.token == site["usd"].address and info.budget == 2_000_000
    assert terms.sealed and terms.bond_wei == 0

    # A bond (ether only) on a TUSD request: one line under the bond field, nothing posted.
    before = _chain_state(site)
    _fill(page, site["url"], "0.384", "2")
    page.fill("#delay_s", "120")
    page.fill("#reveal_s", "60")
    page.fill("#bond_eth", "0.001")
    page.click("[data-testid=post-request]")
    expect(page.locator("#bond_eth-err")).to_have_text("Bonds are in ETH only: a request in a token takes no bond.")
    assert _chain_state(site) == before


@pytest.mark.parametrize("cap, budget, field, says", [
    ("0.384", "40", "#budget_eth-err", "holds 3 TUSD, less than the 40 TUSD budget; fund it first"),
    ("0.3840001", "1", "#cap-err", "has 7 decimals; TUSD has at most 6"),
    ("0.384", "1.0000001", "#budget_eth-err", "has 7 decimals; TUSD has at most 6"),
])
def test_wrong_money_in_the_form_is_one_line_in_the_page_and_nothing_on_chain(
        site: dict[str, Any], page: Any, cap: str, budget: str, field: str | None, says: str) -> None:
    before = _chain_state(site)
    _fill(page, site["url"], cap, budget)
    page.click("[data-testid=post-request]")
    where = page.locator(field) if field else page.locator(".flash-error")
    sync_api.expect(where).to_contain_text(says)
    assert len(where.inner_text().strip().splitlines()) == 1
    assert page.locator(".flash-ok").count() == 0
    assert _chain_state(site) == before  # no request, no TUSD moved, no approval left behind


def test_a_tusd_refund_is_owed_in_tusd_and_withdrawn_from_the_dashboard(site: dict[str, Any], page: Any) -> None:
    """A request nobody bids on: selecting its winners owes the whole budget back in TUSD,
    which the dashboard offers and withdraws (it offered ether refunds only)."""
    expect = sync_api.expect
    _fill(page, site["url"], "0.384", "1")
    page.fill("#bidding_s", "5")
    page.click("[data-testid=post-request]")
    expect(page.locator(".flash-ok")).to_contain_text("Posted request")
    rid = int(page.url.rstrip("/").split("/")[-1])
    held = site["usd"].balance_of(site["utility"])
    expect(page.locator("[data-testid=request-state]")).to_have_text("closed", timeout=90_000)
    page.click("[data-testid=settle]")
    expect(page.locator(".flash-ok")).to_contain_text(f"request {rid}")
    assert site["market"].owed(site["utility"], site["usd"].address) == 1_000_000

    page.goto(site["url"] + "/utility/")
    expect(page.locator("[data-testid=refunds-owed]")).to_have_text("1 TUSD")
    expect(page.locator("[data-testid=withdraw-refunds]")).to_have_text("Withdraw 1 TUSD of refunds")
    page.click("[data-testid=withdraw-refunds]")
    expect(page.locator(".flash-ok")).to_contain_text("Withdrew 1 TUSD of refunds.")
    expect(page.locator("[data-testid=withdraw-refunds]")).to_have_count(0)
    assert site["usd"].balance_of(site["utility"]) == held + 1_000_000
    assert site["market"].owed(site["utility"], site["usd"].address) == 0
