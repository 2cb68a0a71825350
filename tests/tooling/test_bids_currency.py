"""``bids.json``'s ``currency``: prices in a stablecoin, refused mixes, and ``dr consumer check``
weighing ETH gas against TUSD payouts only through ``USD_PER_ETH``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demand_response import cli
from demand_response.bids import load_bids
from demand_response.errors import BidsError
from demand_response.units import ETH, currency


def _write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "bids.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_a_file_priced_in_a_stablecoin_reads_in_its_base_units_and_says_its_currency(tmp_path: Path) -> None:
    doc = load_bids(_write(tmp_path, {"version": 1, "currency": "TUSD",
                                      "bids": [{"kw": 2, "price": "0.30"}, {"kw": 1, "price": "0.45 TUSD/kWh"}]}))
    assert [(o.watts, o.price, o.currency) for o in doc.bids] == [(2000, 300_000, currency("TUSD")),
                                                                  (1000, 450_000, currency("TUSD"))]
    assert load_bids(_write(tmp_path, {"version": 1, "bids": [{"kw": 1, "price": "0.001"}]})).bids[0].currency == ETH


@pytest.mark.parametrize("doc, says", [
    ({"version": 1, "currency": "TUSD", "bids": [{"kw": 1, "price_wei_per_kwh": 10**14}]},
     "price_wei_per_kwh is for ETH, but this file's currency is TUSD"),
    ({"version": 1, "currency": "GOLD", "bids": [{"kw": 1, "price": "1"}]}, "unknown currency 'GOLD'"),
    ({"version": 1, "currency": 6, "bids": [{"kw": 1, "price": "1"}]}, "field 'currency' must be a symbol"),
    ({"version": 1, "currency": "TUSD", "bids": [{"kw": 1, "price": "0.3 ETH/kWh"}]},
     "is in ETH/kWh, but this market uses TUSD/kWh"),
    ({"version": 1, "currency": "TUSD", "bids": [{"kw": 1, "price": "0.0000001"}]}, "TUSD has at most 6"),
])
def test_a_wrong_currency_or_price_is_one_line_naming_the_file(tmp_path: Path, doc: dict, says: str) -> None:
    with pytest.raises(BidsError) as caught:
        load_bids(_write(tmp_path, doc))
    assert says in str(caught.value) and str(caught.value).startswith(str(tmp_path / "bids.json"))
    assert "\n" not in str(caught.value)


def test_consumer_check_weighs_eth_gas_against_token_bids_only_through_the_reference_rate(
        tmp_path: Path, chain, capsys, monkeypatch) -> None:
    _write(tmp_path, {"version": 1, "currency": "TUSD", "bids": [{"kw": 2, "price": "0.30"}, {"kw": 0.1, "price": "0.01"}]})
    monkeypatch.chdir(tmp_path)
    for key in ("USD_PER_ETH", "BID_MARGIN", "DR_ENV_FILE", "RPC_URL", "NETWORK", "CHAIN_ID"):
        monkeypatch.delenv(key, raising=False)
    assert cli.main(["consumer", "check", "--bids-file", "bids.json", "--rpc-url", chain.url]) == 0
    out = capsys.readouterr().out
    assert ("the bids are in TUSD and gas is paid in ETH: set USD_PER_ETH to compare them (without it the "
            "daemon bids without the fee check)") in out
    monkeypatch.setenv("USD_PER_ETH", "3000")
    assert cli.main(["consumer", "check", "--bids-file", "bids.json", "--rpc-url", chain.url]) == 0
    out = capsys.readouterr().out
    assert " TUSD at " in out.splitlines()[1]  # the cost, in ETH and in TUSD
    assert "warning: bid 2 (0.1 kW at 0.01 TUSD/kWh): skip: pays 0.001 TUSD at its ask" in out
    assert "bid 1 " not in out
