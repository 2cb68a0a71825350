"""The consumer's pages in the currency of its bids.json, against a real anvil with one open
request in ETH and one in the 6-decimal TestUSD.

* Bids priced in ETH and a request in TUSD: one line says the daemon does not bid on it; the
  TUSD cap is never compared with ETH prices (no "above the cap" flag, no cap on the curve),
  and the results page shows no TUSD figure for a request the household never bid on.
* Bids priced in TUSD: the form shows and saves them in TUSD (the file keeps its currency: it
  was rewritten in wei as ETH before), the cost of taking part is in ETH and TUSD (with
  ``USD_PER_ETH``), and ``PUT /api/bids`` keeps a TUSD document's currency.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("flask_wtf")

from demand_response import devchain  # noqa: E402
from demand_response.bids import load_bids  # noqa: E402
from demand_response.chain import Signer, connect  # noqa: E402
from demand_response.contract import DemandReduction  # noqa: E402
from demand_response.token import deploy_test_usd, mint_test_usd  # noqa: E402
from demand_response.units import ETH, currency  # noqa: E402
from flaskapp import create_app  # noqa: E402
from flaskapp.daemon import stop_all  # noqa: E402

TUSD = currency("TUSD")


@pytest.fixture(scope="module")
def market(request: pytest.FixtureRequest, start_chain) -> dict[str, Any]:
    """anvil, the market, TestUSD; request 1 in TUSD (cap 0.512 TUSD/kWh), request 2 in ETH."""
    node = start_chain(request, "anvil", accounts=3)
    keys = devchain.dev_private_keys(3, "anvil")
    utility = Signer.from_key(connect(node.url), keys[0])
    dr = DemandReduction.deploy(utility)
    usd = deploy_test_usd(utility)
    mint_test_usd(utility, usd.address, utility.address, 100 * 10**6)
    now = int(utility.w3.eth.get_block("latest")["timestamp"])
    dr.request_reduction(utility, 3000, now + 3600, now + 7200, now + 3600, 512_000, token=usd.address)
    dr.request_reduction(utility, 3000, now + 3600, now + 7200, now + 3600, 128 * 10**12)
    return {"url": node.url, "contract": dr.address, "keys": keys}


@pytest.fixture
def client(market: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("DR_ENV_FILE", str(tmp_path / "absent.env"))
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "bids-currency", "WEB_AUTH": "off",
                      "RPC_URL": market["url"], "CONTRACT_ADDRESS": market["contract"], "DR_ROLE": "consumer",
                      "CONSUMER_PRIVATE_KEY": market["keys"][1], "BIDS_FILE": str(tmp_path / "bids.json"),
                      "RESULTS_FILE": str(tmp_path / "results.json"), "STATE_DIR": str(tmp_path / "state"),
                      "DEPLOYMENTS_FILE": str(tmp_path / "deployments.json"), "USD_PER_ETH": "3000",
                      "BID_MARGIN": "0"})
    yield app.test_client()
    stop_all()


def _text(html: str) -> str:
    """The page's main text, tags and scripts removed, spaces collapsed."""
    main = html[html.find("<main"):html.find("</main>")]
    main = re.sub(r"<(script|svg|style)\b.*?</\1>", " ", main, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", main))


def _write(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc), encoding="utf-8")


def test_bids_in_eth_and_a_request_in_tusd_get_one_line_and_no_figure_across_currencies(
        client: Any, tmp_path: Path) -> None:
    _write(tmp_path / "bids.json", {"version": 1, "bids": [{"kw": 2, "price": "0.0001"}]})

    page = client.get("/consumer/bids")
    html, text = page.get_data(as_text=True), _text(page.get_data(as_text=True))
    assert page.status_code == 200
    # The open request the page looks at is request 1, in TUSD: its cap (512,000 base units) is
    # far below any ETH price in wei, so comparing across currencies flagged every bid.
    assert text.count("Request 1 is open and pays in TUSD, but these bids are priced in ETH: "
                      "the daemon does not bid on it") == 1
    assert "Above the open request's cap" not in text and "0.512 TUSD/kWh" not in text
    assert "Price (ETH/kWh)" in text and 'value="0.0001"' in html and 'data-cap=""' in html

    console = _text(client.get("/consumer/").get_data(as_text=True))
    assert console.count("It pays in TUSD, but your bids are priced in ETH: the daemon does not bid on it.") == 1
    assert "priced in ETH" not in console.split("Request 1 ")[0]  # not said of the ETH request

    results = _text(client.get("/consumer/results").get_data(as_text=True))
    assert "TUSD" not in results and "No bids on this contract yet." in results
    api = client.get("/api/results").json
    assert api["history"]["requests"] == [] and api["history"]["other_currencies"] == {}


def test_bids_in_tusd_are_shown_and_saved_in_tusd(client: Any, tmp_path: Path) -> None:
    path = tmp_path / "bids.json"
    _write(path, {"version": 1, "currency": "TUSD", "bids": [{"kw": 2, "price": "0.30 TUSD/kWh"}]})

    page = client.get("/consumer/bids")
    html, text = page.get_data(as_text=True), _text(page.get_data(as_text=True))
    assert "Price (TUSD/kWh)" in text and 'value="0.3"' in html and "ETH/kWh" not in text.split("Bid curve")[0]
    # The cost of taking part: gas in ETH, and in TUSD through USD_PER_ETH (never wei read as TUSD).
    cost = re.search(r"costs about (.*?) at today's fees", text).group(1)
    assert re.fullmatch(r"1 transaction, [\d,]+ gas: 0\.0\d+ ETH \(≈ \$0\.\d\d\) = 0\.\d+ TUSD", cost), cost

    saved = client.post("/consumer/bids", data={"rows-0-kw": "1.5", "rows-0-price": "0.35", "save": "1"})
    assert saved.status_code == 302
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["currency"] == "TUSD" and doc["bids"] == [{"watts": 1500, "price": "0.35"}]
    assert [(o.watts, o.price, o.currency) for o in load_bids(path).bids] == [(1500, 350_000, TUSD)]

    # More decimals than TUSD has: one line under the field, the file untouched.
    refused = client.post("/consumer/bids", data={"rows-0-kw": "1", "rows-0-price": "0.3500001", "save": "1"})
    assert refused.status_code == 400 and "TUSD has at most 6" in refused.get_data(as_text=True)
    assert json.loads(path.read_text(encoding="utf-8")) == doc

    assert client.get("/api/bids").json["bids"][0]["price"] == "0.35"
    assert client.get("/api/bids").json["currency"] == "TUSD"


def test_put_api_bids_keeps_a_tusd_documents_currency(client: Any, tmp_path: Path) -> None:
    body = {"version": 1, "currency": "TUSD", "bids": [{"watts": 1000, "price": "0.25"}]}
    reply = client.put("/api/bids", data=json.dumps(body))
    assert reply.status_code == 200 and reply.json["saved"] == 1
    (offer,) = load_bids(tmp_path / "bids.json").bids
    assert (offer.watts, offer.price, offer.currency) == (1000, 250_000, TUSD)
    # An ETH document is written as before: wei prices, no currency field.
    client.put("/api/bids", data=json.dumps({"version": 1, "bids": [{"kw": 1, "price": "0.0001"}]}))
    doc = json.loads((tmp_path / "bids.json").read_text(encoding="utf-8"))
    assert "currency" not in doc and doc["bids"] == [{"watts": 1000, "price_wei_per_kwh": 10**14}]
    assert load_bids(tmp_path / "bids.json").bids[0].currency == ETH


def test_a_new_household_chooses_tusd_in_the_form_and_its_bids_are_saved_in_tusd(client: Any, tmp_path: Path) -> None:
    path = tmp_path / "bids.json"
    page = client.get("/consumer/bids").get_data(as_text=True)  # no bids.json yet
    assert re.search(r'<select[^>]*id="currency"', page)
    assert '<option selected value="ETH">' in page and '<option value="TUSD">' in page  # the token request's

    saved = client.post("/consumer/bids", data={"currency": "TUSD", "rows-0-kw": "2", "rows-0-price": "0.3",
                                                "save": "1"})
    assert saved.status_code == 302
    assert json.loads(path.read_text(encoding="utf-8")) == {"version": 1, "source": "web form", "currency": "TUSD",
                                                            "bids": [{"watts": 2000, "price": "0.3"}]}
    assert '<option selected value="TUSD">' in client.get("/consumer/bids").get_data(as_text=True)
    # The preview curve reads the prices in the chosen currency.
    svg = client.get("/api/bids/curve.svg?kw=2&price=0.3&currency=TUSD").get_data(as_text=True)
    assert "TUSD" in svg and "ETH" not in svg

    # A currency the form does not offer: one line under the field, the file untouched.
    refused = client.post("/consumer/bids", data={"currency": "GOLD", "rows-0-kw": "1", "rows-0-price": "0.3",
                                                  "save": "1"})
    assert refused.status_code == 400 and 'id="currency-err"' in refused.get_data(as_text=True)
    assert json.loads(path.read_text(encoding="utf-8"))["currency"] == "TUSD"
