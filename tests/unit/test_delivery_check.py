"""The household's side of metered settlement (``consumer.delivery_check``): when it reports
itself, and its recomputation of the utility's published figure from its own meter store
(a real SQLite store), with the figures shown by ``dr consumer results``."""

from __future__ import annotations

from pathlib import Path

import pytest

from demand_response.cli.consumer import results_table
from demand_response.consumer.delivery_check import DeliveryOptions, check_delivery
from demand_response.errors import UserError
from demand_response.mv import MeterStore, fingerprint, meter_before_after

HOME = "0x00000000000000000000000000000000000000A1"
START, STEP = 1752501600, 900


def _rows(during_wh: int) -> list[tuple[int, int, int]]:
    return [(START - 3600 + i * STEP, STEP, 250) for i in range(4)] + [(START, STEP, during_wh)]


def _published(during_wh: int) -> dict:
    """A DeliveryMetered as the wrapper returns it, from the utility's readings."""
    fp = fingerprint(HOME, meter_before_after(_rows(during_wh), START, START + STEP), _rows(during_wh))
    return {"metered_watts": fp.delivered_watts, "evidence": fp.evidence(), "tx": "0x" + "ab" * 32}


@pytest.fixture
def own_store(tmp_path: Path) -> Path:
    db = tmp_path / "home.sqlite"
    with MeterStore.open(db) as store:
        store.import_batches({HOME: _rows(125)})  # 0.5 kW delivered by the household's own meter
    return db


def test_a_figure_that_matches_the_households_meter_agrees(own_store: Path) -> None:
    check = check_delivery(DeliveryOptions(meter_db=own_store), HOME, _published(125))
    assert (check["metered_watts"], check["recomputed_watts"], check["delivery_agrees"]) == (500, 500, True)
    assert check["same_meter_data"] is True and check["method"] == "meter-before-after"


def test_an_under_measurement_beyond_the_tolerance_is_flagged_with_both_figures(own_store: Path) -> None:
    check = check_delivery(DeliveryOptions(meter_db=own_store), HOME, _published(175))  # utility: 0.3 kW
    assert (check["metered_watts"], check["recomputed_watts"], check["difference_watts"]) == (300, 500, 200)
    assert check["delivery_agrees"] is False and "DISAGREES" in check["delivery_check"]
    lenient = check_delivery(DeliveryOptions(meter_db=own_store, tolerance_watts=200), HOME, _published(175))
    assert lenient["delivery_agrees"] is True
    lines = results_table([{"request_id": 7, "label": "home", "status": "won", "accepted_watts": 1000,
                            "payout_wei": 0, "gas_wei": 0, **check}], {})
    assert lines[-1] == "request 7: the utility metered 0.3 kW, our meter data gives 0.5 kW: DISAGREES"


def test_what_cannot_be_checked_says_why_and_never_raises(tmp_path: Path, own_store: Path) -> None:
    assert check_delivery(DeliveryOptions(), HOME, None) == {}
    assert "no meter store" in check_delivery(DeliveryOptions(), HOME, _published(125))["delivery_check"]
    garbage = dict(_published(125), evidence=b"\x00\xffnot json")
    assert "not a measurement record" in check_delivery(DeliveryOptions(meter_db=own_store), HOME,
                                                        garbage)["delivery_check"]
    empty = dict(_published(125), evidence=b"")
    assert check_delivery(DeliveryOptions(meter_db=own_store), HOME, empty)["delivery_check"] == (
        "the utility published no measurement record")
    other = check_delivery(DeliveryOptions(meter_db=own_store, meter_id="0x" + "b" * 40), HOME, _published(125))
    assert other["delivery_check"].startswith("not checked:")


def test_the_report_fallback_opens_in_the_last_quarter_of_the_report_window() -> None:
    assert DeliveryOptions().report_from(1000, 1400) == 1300
    assert DeliveryOptions(report="always").report_from(1000, 1400) == 1000
    assert DeliveryOptions(report="never").report_from(1000, 1400) is None


def test_delivery_settings_are_read_with_sensible_defaults_and_bad_ones_refused() -> None:
    assert DeliveryOptions.from_settings({}) == DeliveryOptions("fallback", None, None, 50, 5)
    assert DeliveryOptions.from_settings({"REPORT_DELIVERY": "Always", "DELIVERY_TOLERANCE_KW": "0.2",
                                          "DELIVERY_TOLERANCE_PCT": "10", "METER_DB": "m.sqlite",
                                          "METER_ID": "m-1"}) == DeliveryOptions("always", "m.sqlite", "m-1", 200, 10)
    for bad in ({"REPORT_DELIVERY": "sometimes"}, {"DELIVERY_TOLERANCE_KW": "lots"},
                {"DELIVERY_TOLERANCE_PCT": "-1"}):
        with pytest.raises(UserError):
            DeliveryOptions.from_settings(bad)


def test_a_household_calendar_that_differs_from_the_published_one_is_reported_with_its_own_figure(
        tmp_path: Path) -> None:
    """The utility baselined in UTC (a Sunday event: weekend days); the household lives at
    UTC+10, where it is a Monday-morning event (business days): the check says so and gives
    the figure with the household's calendar."""
    from demand_response.mv import caiso_x_of_y
    from demand_response.mv.calendar import Calendar

    day, hour = 1752451200, 3600  # Monday 2025-07-14 00:00 UTC
    weekend = {5, 6}  # Saturday, Sunday (UTC days): 3000 Wh an hour, weekdays 1000
    rows = [(t, hour, 3000 if ((t // 86400) + 3) % 7 in weekend else 1000)
            for t in range(day - 30 * 86400, day + 86400, hour)]
    event = (day - 4 * hour, day - 3 * hour)  # Sunday 20:00 UTC, Monday 06:00 at UTC+10
    rows = [(t, n, 400 if event[0] <= t < event[1] else w) for t, n, w in rows]
    db = tmp_path / "home.sqlite"
    with MeterStore.open(db) as store:
        store.import_batches({HOME: rows})
    fp = fingerprint(HOME, caiso_x_of_y(rows, *event), rows)
    published = {"metered_watts": fp.delivered_watts, "evidence": fp.evidence(), "tx": "0x01"}
    same = check_delivery(DeliveryOptions(meter_db=db, calendar=Calendar("UTC")), HOME, published)
    assert same["delivery_agrees"] and same["calendar_differs"] is False
    other = check_delivery(DeliveryOptions(meter_db=db, calendar=Calendar("+10:00")), HOME, published)
    assert other["delivery_agrees"]  # the published method reproduces the published figure
    assert other["calendar_differs"] and other["own_calendar"]["utc_offset_s"] == 36000
    assert other["published_calendar"]["utc_offset_s"] == 0 and other["own_calendar_watts"] != fp.delivered_watts
