"""Telemetry samples become interval energy readings (the shape the meter data store takes)."""

from __future__ import annotations

from datetime import datetime, timezone

from demand_response.openadr.telemetry import IntervalFeed
from demand_response.openadr.vtn import Telemetry


class _Rows:
    """A sink that keeps what it was given, with the store's refusal of an overlap."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, tuple[int, int, int]]] = []

    def add_readings(self, meter_id, readings):
        for row in readings:
            if any(m == meter_id and r[0] == row[0] for m, r in self.rows):
                raise ValueError(f"meter {meter_id}: duplicate interval at {row[0]}")
            self.rows.append((meter_id, tuple(row)))
        return len(readings)


def _at(address: str, seconds: int, watts: float) -> Telemetry:
    return Telemetry(address, "ven", "meter", datetime.fromtimestamp(seconds, tz=timezone.utc), watts)


def test_samples_in_one_interval_become_its_mean_energy_when_the_next_begins():
    sink = _Rows()
    feed = IntervalFeed(sink, interval_s=900)
    base = 1_800_000_000 // 900 * 900
    for offset, watts in ((0, 1000.0), (300, 2000.0), (600, 3000.0)):
        feed(_at("0xA", base + offset, watts))
    assert sink.rows == []  # the interval is still open
    feed(_at("0xA", base + 900, 500.0))
    assert sink.rows == [("0xA@meter", (base, 900, 500))]  # 2000 W mean for 15 min = 500 Wh
    feed.flush()
    assert sink.rows[-1] == ("0xA@meter", (base + 900, 900, 125))


def test_addresses_are_kept_apart_and_late_samples_are_dropped():
    sink = _Rows()
    feed = IntervalFeed(sink, interval_s=900)
    base = 1_800_000_000 // 900 * 900
    feed(_at("0xA", base, 3600.0))
    feed(_at("0xB", base, 7200.0))
    feed(_at("0xA", base + 900, 0.0))
    feed(_at("0xA", base + 10, 1e9))  # older than the open interval: ignored, not merged
    feed.flush()
    assert sorted(sink.rows) == [("0xA@meter", (base, 900, 900)), ("0xA@meter", (base + 900, 900, 0)),
                                 ("0xB@meter", (base, 900, 1800))]


def test_two_resources_of_one_ven_are_two_meters_and_the_feed_counts_what_it_stored():
    sink = _Rows()
    feed = IntervalFeed(sink, interval_s=900)
    base = 1_800_000_000 // 900 * 900
    at = datetime.fromtimestamp(base, tz=timezone.utc)
    feed(Telemetry("0xA", "ven", "devices", at, 2000.0))
    feed(Telemetry("0xA", "ven", "meter", at, 400.0))
    feed.flush()
    # summed W of two resources is not their mean: each is its own series
    assert sorted(sink.rows) == [("0xA@devices", (base, 900, 500)), ("0xA@meter", (base, 900, 100))]
    assert feed.samples == {"0xA@devices": 1, "0xA@meter": 1} and feed.stored == {"0xA@devices": 1, "0xA@meter": 1}
