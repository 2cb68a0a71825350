"""The bid-stack chart's scale: bids stay readable whatever the cap (issue 14, bug 12)."""

from __future__ import annotations

import re

from flaskapp.charts import TOP, H, BOTTOM, merit_order_svg
from flaskapp.units import Money

GWEI = 10**9
UNIT = Money()
PLOT_HEIGHT = H - TOP - BOTTOM


def _step_heights(svg: str) -> list[float]:
    return [float(h) for h in re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)" class="step', svg)]


def test_bids_far_below_the_cap_fill_the_chart_and_the_cap_is_marked_off_it() -> None:
    cap = 128_000_000 * GWEI  # 1,000 times the bids
    svg = merit_order_svg([(100_000 * GWEI, 2000), (128_000 * GWEI, 1000)], UNIT, title="t", cap=cap,
                          target_watts=2500)
    heights = _step_heights(svg)
    assert len(heights) == 2 and min(heights) > PLOT_HEIGHT / 2  # not squashed onto the axis
    assert 'class="cap"' not in svg
    assert "↑ cap 0.128 ETH/kWh (above this scale)" in svg
    assert "above the chart&#x27;s scale" in svg or "above the chart's scale" in svg


def test_a_cap_near_the_bids_is_drawn_as_a_line_on_the_scale() -> None:
    svg = merit_order_svg([(100_000 * GWEI, 2000)], UNIT, title="t", cap=128_000 * GWEI)
    assert 'class="cap"' in svg and "above this scale" not in svg
    assert max(_step_heights(svg)) < PLOT_HEIGHT * 100 / 128 + 1  # the cap is the top of the scale


def test_with_no_bids_the_cap_sets_the_scale() -> None:
    svg = merit_order_svg([], UNIT, title="t", cap=128_000 * GWEI)
    assert 'class="cap"' in svg and "no bids yet" in svg
