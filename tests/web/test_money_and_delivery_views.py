"""What people read, as pure functions (no chain): money in the market's currency, gross/gas/net
with unknown figures shown as unknown, the bid form's "does not pay" warning, and published
delivery records (written by ``demand_response.mv.records``) as baseline-against-metered charts."""

from __future__ import annotations

import re
from decimal import Decimal

from demand_response.contract import BidInfo, TermsInfo
from demand_response.market import payout
from demand_response.mv import compute, fingerprint
from demand_response.mv.records import build_record, series_of
from demand_response.units import USDC, parse_rate
from flaskapp import presenters
from flaskapp.charts import delivery_svg
from flaskapp.units import Money

ETH_MONEY = Money()
OPEN = TermsInfo(False, False, 0, 0, 0, 0, 0, 0)
T0 = 1752451200
ALICE = "0x" + "11" * 20
CONTRACT = "0x" + "Ab" * 20


def _record(address: str = ALICE) -> dict:
    """A delivery record exactly as the utility publishes it: 2 flat hours, then a 1-hour event at half load."""
    rows = [(T0 + i * 900, 900, 250) for i in range(8)] + [(T0 + (8 + i) * 900, 900, 125) for i in range(4)]
    result = compute("meter-before-after", rows, T0 + 7200, T0 + 10800)
    return build_record(fingerprint(address, result, rows), series_of(result), chain_id=31337, contract=CONTRACT,
                        request_id=4, address=address)


def _row(record: dict) -> dict:
    bid = BidInfo(1, "0x" + "22" * 20, 2000, 10**14, False, True, 2000, payout(2000, 3600, 10**14))
    request = {"accepted_watts": 2000}
    return presenters.history_row(request, OPEN, [bid], record, [], ETH_MONEY)


def test_prices_read_in_the_markets_currency_per_kwh_with_an_optional_fiat_figure() -> None:
    assert ETH_MONEY.format(10**14) == "0.0001 ETH/kWh" and ETH_MONEY.label == "ETH/kWh"
    with_rate = Money(rate=parse_rate("3000"))
    assert with_rate.format(10**14) == "0.0001 ETH/kWh (≈ $0.30/kWh)"
    assert with_rate.amount(179_375 * 10**9) == "0.000179 ETH (≈ $0.54)"
    usdc = Money(USDC)
    assert usdc.format(350_000) == "0.35 USDC/kWh" and usdc.parse_price("0.35") == 350_000
    assert usdc.amount(None) == "—"


def test_a_price_with_more_decimals_than_the_currency_is_refused_in_one_line() -> None:
    try:
        Money(USDC).parse_price("0.3500001")
    except ValueError as exc:
        assert str(exc) == "price 0.3500001 has 7 decimals; USDC has at most 6 (its smallest unit is 0.000001 USDC)"
    else:
        raise AssertionError("accepted a price finer than the currency")


def test_an_events_gross_gas_and_net_come_from_the_results_record() -> None:
    row = _row({"gas_wei": "179375000000000", "net_wei": str(200_000_000_000_000 - 179_375_000_000_000)})
    assert row["paid_wei"] == "200000000000000" and row["gas_wei"] == "179375000000000"
    assert row["display"]["gas"] == "0.000179 ETH" and row["display"]["net"] == "0.000021 ETH"


def test_a_record_without_gas_shows_gas_and_net_as_unknown_never_zero() -> None:
    row = _row({"paid_wei": "5"})
    assert row["gas_wei"] is None and row["net_wei"] is None
    assert row["display"]["gas"] == "—" and row["display"]["net"] == "—"
    known = _row({"gas_wei": "10", "net_wei": "20"})
    totals = presenters.consumer_history("0xabc", [known, row], 0, ETH_MONEY)["totals"]
    assert totals["gas_wei"] is None and totals["net_wei"] is None and totals["gas_unknown"] == 1
    assert totals["display"]["net"] == "—"
    totals = presenters.consumer_history("0xabc", [known, known], 0, ETH_MONEY)["totals"]
    assert (totals["gas_wei"], totals["net_wei"], totals["gas_unknown"]) == ("20", "40", 0)


def test_a_records_row_with_a_negative_net_says_the_household_lost_money() -> None:
    rows, _ = presenters.record_rows([{"request_id": 1, "payout_wei": "100", "gas_wei": "300", "net_wei": "-200"}])
    assert (rows[0]["paid"], rows[0]["gas"], rows[0]["net"]) == (100, 300, -200)
    assert ETH_MONEY.amount(rows[0]["net"]).startswith("-")


def test_an_offer_whose_payout_cannot_cover_the_cost_of_taking_part_is_flagged_with_the_reason() -> None:
    cost = 179_375 * 10**9  # 3 transactions at 1 gwei
    offers = [(130, 4 * 10**13), (5000, 10**14)]  # a typical home's 130 W at 0.00004 ETH/kWh; 5 kW at 0.0001
    warnings = presenters.bid_warnings(offers, 3600, cost, "0", ETH_MONEY)
    assert list(warnings) == [0]
    assert warnings[0].startswith("pays 0.000005 ETH at its ask, but taking part costs 0.000179 ETH")
    assert presenters.bid_warnings(offers, 3600, cost, Decimal("5"), ETH_MONEY).keys() == {0, 1}


def test_a_published_delivery_record_shows_its_figures_method_hash_and_a_chart() -> None:
    record = _record()
    [shown] = presenters.delivery_records([record])
    assert (shown["baseline_wh"], shown["metered_wh"], shown["delivered_watts"]) == (1000, 500, 500)
    assert shown["display"]["delivered"] == "0.5 kW" and shown["display"]["reduction"] == "0.5 kWh"
    assert shown["method"] == "meter-before-after" and shown["data_hash"] == record["data_hash"]
    svg = shown["chart"]
    assert svg.startswith("<svg") and "<title" in svg and "reduction 0.500 kWh" in svg
    assert svg.count('class="reduction"><title>') == 4  # every event interval is below its baseline
    assert 'class="baseline"' in svg and 'class="metered"' in svg


def test_hostile_delivery_records_draw_no_chart_and_are_escaped() -> None:
    bad = [
        {**_record(), "intervals": [[T0, 900, "250", 125]]},  # a string figure
        {**_record(), "intervals": [[T0, 0, 250, 125]]},  # zero-length interval
        {**_record(), "intervals": [[T0, 900, 250, 125]] * 10_001},  # too many
        {**_record(), "intervals": {"a": 1}},
        {"method": "<script>alert(1)</script>", "baseline_wh": "x"},
    ]
    shown = presenters.delivery_records(bad)
    assert [s["chart"] for s in shown] == [None] * 5
    assert shown[4]["baseline_wh"] is None and shown[4]["display"]["baseline"] == "—"
    svg = delivery_svg([[T0, 900, 250, 125]], title="<script>x</script>")
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_the_delivery_chart_plots_average_kw_per_interval() -> None:
    svg = delivery_svg([[T0, 900, 250, 125], [T0 + 900, 900, 250, 250]], title="t")
    assert "2 interval(s); baseline 0.500 kWh, metered 0.375 kWh, reduction 0.125 kWh" in svg
    assert svg.count('class="reduction"><title>') == 1  # the second interval delivered nothing
    ticks = re.findall(r'class="tick" text-anchor="end">([^<]+)<', svg)
    assert ticks[0] == "0" and float(ticks[-1]) >= 1.0  # 250 Wh in 15 min is 1 kW
    assert "no interval data" in delivery_svg([], title="t")
