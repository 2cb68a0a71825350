"""The demo's meter data helpers (demand_response/demo.py): event windows on interval
boundaries, the households' time zone, and histories a baseline can settle on."""

from __future__ import annotations

from demand_response.demo import (HISTORY_DAYS, INTERVAL_S, event_window, local_offset_s, meter_histories,
                                  with_reduction)
from demand_response.mv import compute


def test_the_event_window_starts_on_the_next_15_minute_boundary_and_lasts_an_hour() -> None:
    assert event_window(1_796_000_000) == (1_796_000_400, 1_796_004_000)
    assert event_window(1_796_000_400) == (1_796_000_400, 1_796_004_000)  # already on a boundary


def test_the_households_time_zone_puts_any_event_start_at_17_00_local() -> None:
    for start in (0, 900, 6 * 3600, 17 * 3600, 23 * 3600 + 2700, 1_796_000_400):
        offset = local_offset_s(start)
        assert -12 * 3600 <= offset < 12 * 3600 and offset % 900 == 0
        assert (start + offset) % 86400 == 17 * 3600


def test_a_reduction_sheds_only_what_an_interval_draws_and_only_inside_the_event() -> None:
    rows = [(0, 900, 1000), (900, 900, -50), (1800, 900, 300), (2700, 900, 900)]
    assert with_reduction(rows, 900, 2700, 2000) == [(0, 900, 1000), (900, 900, -50), (1800, 900, 0),
                                                     (2700, 900, 900)]
    assert with_reduction(rows, 0, 900, 2000) == [(0, 900, 500), *rows[1:]]


def test_histories_cover_the_lookback_and_caiso_10in10_finds_the_reduction_within_ten_percent() -> None:
    accounts = ["0x" + f"{i:040x}" for i in (1, 2)]
    start, end = event_window(1_796_000_000)
    histories = meter_histories(accounts, start, end)
    for account in accounts:
        rows = histories[account]
        assert rows[-1][0] == end - INTERVAL_S and all(r[1] == INTERVAL_S for r in rows)
        assert rows[0][0] <= start - HISTORY_DAYS * 86400  # at least the lookback the baseline needs
        result = compute("caiso-10in10", with_reduction(rows, start, end, 3000), start, end)
        assert len(result.days_used) == 10
        assert abs(result.delivered_watts - 3000) <= 300, result.delivered_watts
