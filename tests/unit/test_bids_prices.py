"""``bids.json`` prices as decimals in the market's currency, and the fee warnings on offers."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from demand_response.bids import Offer, bid_margin, cost_warnings, load_bids, parse_bids
from demand_response.errors import BidsError, ConfigError


def _one(bid: dict) -> str:
    return json.dumps({"version": 1, "bids": [bid]})


def test_a_decimal_price_string_is_read_as_wei_per_kwh() -> None:
    doc = parse_bids(_one({"kw": 1.2, "price": "0.0045"}))
    assert doc.bids == (Offer(1200, 45 * 10**14),)


def test_a_price_may_carry_the_markets_unit() -> None:
    assert parse_bids(_one({"watts": 500, "price": "0.0045 ETH/kWh"})).bids[0].price == 45 * 10**14


def test_a_json_number_price_is_read_through_its_short_form() -> None:
    assert parse_bids(_one({"watts": 500, "price": 0.35})).bids[0].price == 35 * 10**16


def test_the_wei_field_keeps_working_beside_decimal_prices() -> None:
    text = json.dumps({"version": 1, "bids": [{"watts": 1000, "price": "0.004"},
                                             {"watts": 800, "price_wei_per_kwh": 40 * 10**14}]})
    assert [o.price for o in parse_bids(text).bids] == [40 * 10**14, 40 * 10**14]


@pytest.mark.parametrize("bid, message", [
    ({"watts": 1000, "price": "0.004", "price_wei_per_kwh": 1}, "give exactly one of 'price' or"),
    ({"watts": 1000}, "missing field 'price_wei_per_kwh' (or 'price', a decimal of ETH per kWh"),
    ({"watts": 1000, "price": "0"}, "bids[0].price must be more than 0 ETH"),
    ({"watts": 1000, "price": "-0.1"}, "must not be negative"),
    ({"watts": 1000, "price": "NaN"}, "not a finite number"),
    ({"watts": 1000, "price": "1e999"}, "far too large"),
    ({"watts": 1000, "price": "1,5"}, "no thousands separators"),
    ({"watts": 1000, "price": "0.0000000000000000001"}, "has 19 decimals; ETH has at most 18"),
    ({"watts": 1000, "price": "0.35 USDC/kWh"}, "is in USDC/kWh, but this market uses ETH/kWh"),
    ({"watts": 1000, "price": "cheap"}, "is not a number"),
    ({"watts": 1000, "price": True}, "is not a number"),
    ({"watts": 1000, "price": None}, "must be a decimal such as"),
    ({"watts": 1000, "price": ["0.1"]}, "must be a decimal such as"),
])
def test_a_bad_price_is_one_line_naming_the_field(bid: dict, message: str) -> None:
    with pytest.raises(BidsError) as caught:
        parse_bids(_one(bid))
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_a_bad_price_in_a_file_names_the_file_and_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "bids.json"
    text = _one({"kw": 1, "price": "0.1 EUR/kWh"})
    path.write_text(text)
    with pytest.raises(BidsError, match=r"bids.json: bids\[0\].price '0.1 EUR/kWh' is in EUR/kWh"):
        load_bids(path)
    assert path.read_text() == text


def test_a_fleet_entrys_decimal_price_names_its_place() -> None:
    text = json.dumps({"version": 1, "fleet": [{"bids": [{"watts": 1, "price": "x"}]}]})
    with pytest.raises(BidsError, match=r"fleet\[0\].bids\[0\].price 'x' is not a number"):
        parse_bids(text)


def test_cost_warnings_name_each_offer_that_cannot_pay_for_taking_part() -> None:
    # 1 h event; cost 0.0002 ETH; margin 1.5 -> needs 0.0003 ETH
    offers = [Offer(1000, 10**15), Offer(100, 10**15)]  # pays 0.001 ETH, 0.0001 ETH
    lines = cost_warnings(offers, 2 * 10**14, 3600, Decimal("1.5"))
    assert len(lines) == 1
    assert lines[0].startswith("bid 2 (0.1 kW at 0.001 ETH/kWh): skip: pays 0.0001 ETH at its ask")
    assert "taking part costs 0.0002 ETH; it needs at least 0.0003 ETH" in lines[0]


def test_cost_warnings_are_off_with_a_zero_margin() -> None:
    assert cost_warnings([Offer(1, 1)], 10**18, 3600, 0) == []


def test_bid_margin_defaults_to_one_and_a_half_and_refuses_nonsense() -> None:
    assert bid_margin(None) == bid_margin("") == Decimal("1.5")
    assert bid_margin("0") == 0 and bid_margin("2") == 2
    for bad in ("0.5", "-1", "lots", "inf"):
        with pytest.raises(ConfigError, match="BID_MARGIN"):
            bid_margin(bad)
