"""The presenters are pure functions of chain data: no chain here, only dataclasses.

They name every quantity once (docs/web.md, "Glossary"): a request whose winners are
selected and unpaid shows what was *promised* and 0 *paid*, and is never "settled".
"""

from __future__ import annotations

from dataclasses import replace

from demand_response.contract import BidInfo, ParticipantInfo, RequestInfo, Stage, Status, TermsInfo
from demand_response.market import PricingRule, payout, settle_delivery
from flaskapp import presenters
from flaskapp.reads import DeliveryLogs
from flaskapp.units import Money

GWEI = 10**9
UNIT = Money()
NOW = 1_800_000_000
PRICE = 70_000 * GWEI
PROMISED = payout(3000, 3600, PRICE)
SELECTED = RequestInfo(1, Status.SETTLED, PricingRule.UNIFORM, 3000, NOW + 100, NOW + 3700, NOW - 10,
                       128_000 * GWEI, 1000 * GWEI, 10**15, 2, 2, PRICE, 3000, PROMISED, 0, 0)
OPEN_TERMS = TermsInfo(False, False, 0, 0, 0, 0, 0, 0)
METERED = TermsInfo(False, True, 0, NOW + 3800, NOW + 3900, 10**14, 0, 0, selected_at=NOW)


def test_a_selected_unpaid_request_shows_promised_and_zero_paid_and_is_not_settled() -> None:
    row = presenters.request_dict(SELECTED, OPEN_TERMS, UNIT, NOW, NOW)
    assert (row["state"], row["phase"]) == ("selected", "scheduled")
    assert row["promised_wei"] == str(PROMISED) and row["paid_wei"] == "0"
    assert row["display"]["promised"] == "0.00021 ETH" and row["display"]["paid"] == "0 ETH"
    assert row["refund_wei"] == str(10**15 - PROMISED)


def test_a_fully_paid_request_is_settled_and_paid_equals_promised() -> None:
    paid = replace(SELECTED, paid_out=PROMISED, claimed_watts=3000)
    row = presenters.request_dict(paid, OPEN_TERMS, UNIT, NOW, NOW + 4000)
    assert (row["state"], row["phase"], row["paid_wei"]) == ("settled", "settled", str(PROMISED))


def test_before_selection_selection_figures_are_empty() -> None:
    open_ = replace(SELECTED, status=Status.OPEN, clearing_price=0, accepted_watts=0, reserved=0)
    row = presenters.request_dict(open_, OPEN_TERMS, UNIT, NOW - 20, NOW - 20)
    assert (row["state"], row["phase"]) == ("open", "bidding")
    assert row["promised_wei"] is None and row["accepted_watts"] is None and row["display"]["promised"] == "—"


def test_a_consumers_history_row_separates_promised_paid_and_unclaimed() -> None:
    bids = [BidInfo(0, "0xC", 2000, PRICE, False, False, 2000, payout(2000, 3600, PRICE)),
            BidInfo(1, "0xC", 2000, PRICE, False, True, 1000, payout(1000, 3600, PRICE))]
    request = presenters.request_dict(SELECTED, OPEN_TERMS, UNIT, NOW, NOW)
    row = presenters.history_row(request, OPEN_TERMS, bids, {}, ["0xabc"])
    assert row["promised_wei"] == str(PROMISED)
    assert row["paid_wei"] == str(payout(1000, 3600, PRICE))  # the claimed bid
    assert row["unclaimed_wei"] == str(payout(2000, 3600, PRICE))
    history = presenters.consumer_history("0xC", [row], owed=5)
    assert history["totals"]["promised_wei"] == str(PROMISED) and history["can_withdraw"]


def test_the_delivery_table_pays_by_the_packages_settlement_rule() -> None:
    who = "0x00000000000000000000000000000000000000C1"
    reported = ParticipantInfo(Stage.REPORTED, b"", True, 0, 1, 10**14, 3000, PROMISED, 1500)
    table = presenters.delivery_table(SELECTED, METERED, [(who, reported)], DeliveryLogs({}, {}, {}), NOW + 3850)
    row = table["participants"][0]
    expected = settle_delivery(3000, PROMISED, 1500, 10**14, selected_late=False)
    assert row["if_confirmed_wei"] == str(expected.payout) and row["promised_wei"] == str(PROMISED)
    assert row["can_confirm"] and row["can_dispute"] and not row["can_settle"]
    assert row["settle_from"] == METERED.dispute_deadline + 1
    settled_event = {"deliveredWatts": 1500, "payout": expected.payout, "penalty": expected.penalty,
                     "bondReturned": expected.bond_returned}
    done = replace(reported, stage=Stage.SETTLED)
    table = presenters.delivery_table(SELECTED, METERED, [(who, done)],
                                      DeliveryLogs({}, {}, {who.lower(): settled_event}), NOW + 4000)
    assert table["participants"][0]["paid_wei"] == str(expected.payout)
    assert table["totals"]["paid_wei"] == str(expected.payout) and table["totals"]["promised_wei"] == str(PROMISED)


def test_an_opt_out_is_its_whole_dispatch_of_expected_under_delivery_and_a_cancelled_one_expects_nothing() -> None:
    from demand_response.openadr.store import EventRecord

    def event(eid: str, who: str, watts: int, opt: str | None, status: str = "active") -> EventRecord:
        return EventRecord(eid, "ven-" + eid, who, 1, "dr://1/0xab/1", "dispatch", watts, 0, 3600, status, 0, opt, 5)

    table = presenters.openadr_dispatch(
        [event("a", "0xA", 2000, "optOut"), event("b", "0xB", 1500, "optIn"), event("c", "0xC", 700, None),
         event("d", "0xD", 900, "optOut", status="cancelled")],
        {"a": [{"opt": "optIn", "reason": None, "resources": [], "at": 1},
               {"opt": "optOut", "reason": "overrideStatus", "resources": ["water-heater"], "at": 2}]})
    rows = {r["consumer"]: r for r in table["winners"]}
    assert table["expected_under_watts"] == 2000 and table["display"]["under"] == "2 kW"
    assert (rows["0xA"]["display"]["opt"], rows["0xA"]["resources"], rows["0xA"]["reason"]) == (
        "opted out", ["water-heater"], "overrideStatus")
    assert [rows[w]["display"]["opt"] for w in ("0xB", "0xC", "0xD")] == ["opted in", "no answer yet", "cancelled"]
    assert [rows[w]["expected_under_watts"] for w in ("0xB", "0xC", "0xD")] == [0, 0, 0]


def test_the_households_check_of_a_metered_figure_shows_both_figures() -> None:
    record = {"metered_watts": 300, "recomputed_watts": 500, "difference_watts": 200, "delivery_agrees": False,
              "delivery_check": "meter-before-after: published 300 W, recomputed 500 W (+200 W, tolerance 50 W): "
                                "DISAGREES", "method": "meter-before-after", "paid_wei": 10}
    row = presenters.delivery_record(record)
    assert row["check"]["agrees"] is False and row["check"]["difference_watts"] == 200
    assert row["display"]["check"].startswith("DISAGREES: utility 0.3") and "our meter 0.5" in row["display"]["check"]
    assert presenters.delivery_record({"paid_wei": 10})["display"]["check"] == "—"  # not metered by the utility
    unchecked = presenters.delivery_record({"metered_watts": 300, "delivery_check": "not checked: no meter store"})
    assert unchecked["check"]["agrees"] is None and "no meter store" in unchecked["display"]["check"]


def test_a_relayed_request_shows_zero_gas_marked_relayed_in_the_history_and_the_records() -> None:
    bids = [BidInfo(0, "0xC", 3000, PRICE, False, True, 3000, PROMISED)]
    request = presenters.request_dict(SELECTED, OPEN_TERMS, UNIT, NOW, NOW)
    record = {"request_id": 1, "status": "won", "paid_wei": PROMISED, "payout_wei": PROMISED, "gas_wei": 0,
              "net_wei": PROMISED, "relayed": True, "bid_txs": ["0xrelay"]}
    row = presenters.history_row(request, OPEN_TERMS, bids, record, [])
    assert row["relayed"] is True and row["gas_wei"] == "0" and row["display"]["gas"] == "0 ETH (relayed)"
    own = presenters.history_row(request, OPEN_TERMS, bids, dict(record, relayed=None, gas_wei=10**12), [])
    assert own["relayed"] is False and "relayed" not in own["display"]["gas"]
    rows, _ = presenters.record_rows([record])
    assert rows[0]["money"]["gas"] == "0 ETH (relayed)" and rows[0]["money"]["net"] == row["display"]["paid"]
