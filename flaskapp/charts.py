"""Server-side SVG charts (no JavaScript library, no external assets).

``merit_order_svg`` draws a supply curve: offers sorted by unit price, as a step chart of
cumulative kW (x) against price per kWh (y). The consumer's bid preview and the utility's
live bid stack use it; the utility's adds the target (a vertical line) and, once winners
are selected, the clearing price (a horizontal line). The price cap is a dashed line, or,
when it is more than ``CAP_OFF_CHART_RATIO`` times the highest bid, a label at the top edge
("↑ cap … (above this scale)"), so bids far below the cap are not squashed onto the axis.
"""

from __future__ import annotations

import math
import time
from html import escape
from typing import Iterable, Sequence

from .units import Money, fmt_kw

W, H = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 78, 18, 16, 46
#: A cap more than this many times the highest bid (or clearing price) is drawn off the chart.
CAP_OFF_CHART_RATIO = 3.0


def _nice_step(span: float, ticks: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def _fmt_axis(value: float, step: float = 1.0) -> str:
    """A tick label with as many decimals as the step needs (``0.0001`` ETH/kWh steps too)."""
    places = max(0, -math.floor(math.log10(step)) + 1) if step > 0 else 0
    text = f"{value:,.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def merit_order_svg(
    levels: Iterable[tuple[int, int]],
    unit: Money,
    *,
    title: str,
    target_watts: int | None = None,
    clearing_price: int | None = None,
    cap: int | None = None,
    chart_id: str = "chart",
) -> str:
    """An accessible SVG step chart of ``(price wei/kWh, watts)`` levels (any order)."""
    steps = sorted((int(p), int(w)) for p, w in levels if int(w) > 0)
    total_kw = sum(w for _, w in steps) / 1000
    prices = [unit.from_base(p) for p, _ in steps]
    x_max = max([total_kw, (target_watts or 0) / 1000 * 1.1, 0.001])
    y_candidates = [float(p) for p in prices]
    if clearing_price:
        y_candidates.append(float(unit.from_base(clearing_price)))
    highest = max(y_candidates + [1e-9])
    cap_value = float(unit.from_base(cap)) if cap else None
    # The cap sets the scale only when it is near the bids; far above them it would squash
    # every bid onto the axis, so it is marked at the top edge as off the chart instead.
    cap_off_chart = bool(cap_value and y_candidates and cap_value > highest * CAP_OFF_CHART_RATIO)
    if cap_value and not cap_off_chart:
        highest = max(highest, cap_value)
    y_max = highest * (1.2 if cap_off_chart else 1.08)  # room for the off-chart cap's label
    x_step, y_step = _nice_step(x_max), _nice_step(y_max)
    x_max = max(x_max, x_step)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(kw: float) -> float:
        return LEFT + pw * kw / x_max

    def sy(price: float) -> float:
        return TOP + ph * (1 - price / y_max)

    desc_parts = [f"{len(steps)} price level(s), {fmt_kw(sum(w for _, w in steps))} offered in total"]
    if cap and cap_off_chart:
        desc_parts.append(f"cap {unit.format(cap)}, above the chart's scale")
    if target_watts:
        desc_parts.append(f"target {fmt_kw(target_watts)}")
    if clearing_price:
        desc_parts.append(f"clearing price {unit.format(clearing_price)}")
    out = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{chart_id}-t {chart_id}-d" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape("; ".join(desc_parts))}</desc>',
        f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" class="plot"/>',
    ]
    # grid and ticks
    value = 0.0
    while value <= y_max + 1e-12:
        y = sy(value)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_fmt_axis(value, y_step)}</text>')
        value += y_step
    value = 0.0
    while value <= x_max + 1e-12:
        x = sx(value)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + ph}" class="grid"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + ph + 16}" class="tick" text-anchor="middle">{_fmt_axis(value, x_step)}</text>')
        value += x_step
    out.append(f'<text x="{LEFT + pw / 2:.1f}" y="{H - 6}" class="axis" text-anchor="middle">cumulative reduction (kW)</text>')
    out.append(f'<text x="14" y="{TOP + ph / 2:.1f}" class="axis" text-anchor="middle" '
               f'transform="rotate(-90 14 {TOP + ph / 2:.1f})">price ({escape(unit.label)})</text>')
    # steps: one filled block per level; once settled, the accepted part is highlighted
    # (the marginal level only in part, as the contract accepts it).
    cumulative = 0.0
    remaining = target_watts if target_watts is not None else None
    for (price_wei, watts), price in zip(steps, prices):
        y = sy(float(price))
        taken = 0
        if clearing_price and price_wei <= clearing_price:
            taken = watts if remaining is None else max(0, min(watts, remaining))
            if remaining is not None:
                remaining -= taken
        parts = [(taken, "step accepted", "accepted"), (watts - taken, "step", "offered")]
        left = cumulative
        for part_watts, cls, word in parts:
            if part_watts <= 0:
                continue
            x0, x1 = sx(left), sx(left + part_watts / 1000)
            out.append(
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 0.8):.1f}" height="{TOP + ph - y:.1f}" class="{cls}">'
                f'<title>{fmt_kw(part_watts)} {word} at {escape(unit.format(price_wei))}</title></rect>'
            )
            left += part_watts / 1000
        cumulative += watts / 1000
    if steps:
        points = []
        cumulative = 0.0
        for price_wei, watts in steps:
            y = sy(float(unit.from_base(price_wei)))
            points.append(f"{sx(cumulative):.1f},{y:.1f}")
            cumulative += watts / 1000
            points.append(f"{sx(cumulative):.1f},{y:.1f}")
        out.append(f'<polyline points="{" ".join(points)}" class="curve"/>')
    else:
        out.append(f'<text x="{LEFT + pw / 2:.1f}" y="{TOP + ph / 2:.1f}" class="empty" text-anchor="middle">no bids yet</text>')
    if cap and cap_off_chart:
        out.append(f'<text x="{LEFT + 6}" y="{TOP + 14}" class="label cap-off">'
                   f'↑ cap {escape(unit.format(cap))} (above this scale)</text>')
    elif cap:
        y = sy(float(unit.from_base(cap)))
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="cap"/>')
        out.append(f'<text x="{LEFT + 6}" y="{y - 5:.1f}" class="label">cap {escape(unit.format(cap))}</text>')
    if target_watts:
        x = sx(target_watts / 1000)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + ph}" class="target"/>')
        anchor, dx = ("end", -5) if x > LEFT + pw * 0.6 else ("start", 5)
        out.append(f'<text x="{x + dx:.1f}" y="{TOP + ph - 8}" class="label target-label" text-anchor="{anchor}">'
                   f'target {fmt_kw(target_watts)}</text>')
    if clearing_price:
        y = sy(float(unit.from_base(clearing_price)))
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="clearing"/>')
        out.append(f'<text x="{LEFT + 6}" y="{y - 5:.1f}" class="label clearing-label">clearing {escape(unit.format(clearing_price))}</text>')
    out.append("</svg>")
    return "\n".join(out)



def _clock(ts: int) -> str:
    """``HH:MM`` in the server's local time, like the pages' other times."""
    return time.strftime("%H:%M", time.localtime(int(ts)))


def delivery_svg(intervals: Sequence[Sequence[int]], *, title: str, chart_id: str = "delivery",
                 event_start: int | None = None, event_end: int | None = None) -> str:
    """An accessible SVG of baseline against metered load over an event: each interval's
    average kW (``Wh × 3600 ÷ seconds``) as two step lines, the reduction (baseline above
    metered) shaded. ``intervals`` are a delivery record's ``[start, seconds, baseline_wh,
    metered_wh]`` rows (``demand_response.mv.records``), already checked by the caller."""
    rows = sorted((int(s), int(d), int(b), int(m)) for s, d, b, m in intervals if int(d) > 0)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    baseline_wh = sum(r[2] for r in rows)
    metered_wh = sum(r[3] for r in rows)
    desc = (f"{len(rows)} interval(s); baseline {baseline_wh / 1000:.3f} kWh, metered {metered_wh / 1000:.3f} kWh, "
            f"reduction {(baseline_wh - metered_wh) / 1000:.3f} kWh")
    out = [
        f'<svg class="chart delivery-chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{chart_id}-t {chart_id}-d" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>',
        f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" class="plot"/>',
    ]
    if not rows:
        out.append(f'<text x="{LEFT + pw / 2:.1f}" y="{TOP + ph / 2:.1f}" class="empty" text-anchor="middle">'
                   'no interval data</text></svg>')
        return "\n".join(out)
    t0, t1 = rows[0][0], max(s + d for s, d, _, _ in rows)
    kw = [(s, d, b * 3.6 / d, m * 3.6 / d) for s, d, b, m in rows]  # Wh over d seconds as average kW
    y_max = max([max(b, m) for _, _, b, m in kw] + [0.001]) * 1.08
    y_step = _nice_step(y_max)

    def sx(ts: float) -> float:
        return LEFT + pw * (ts - t0) / max(t1 - t0, 1)

    def sy(value: float) -> float:
        return TOP + ph * (1 - value / y_max)

    value = 0.0
    while value <= y_max + 1e-12:
        y = sy(value)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_fmt_axis(value, y_step)}</text>')
        value += y_step
    n_ticks = min(6, len(rows))
    for i in range(n_ticks + 1):
        ts = t0 + (t1 - t0) * i / max(n_ticks, 1)
        x = sx(ts)
        out.append(f'<text x="{x:.1f}" y="{TOP + ph + 16}" class="tick" text-anchor="middle">{_clock(int(ts))}</text>')
    if event_start is not None and event_end is not None and (t0 < event_start or t1 > event_end):
        x0, x1 = sx(max(event_start, t0)), sx(min(event_end, t1))  # the event, when data reach beyond it
        if x1 > x0:
            out.append(f'<rect x="{x0:.1f}" y="{TOP}" width="{x1 - x0:.1f}" height="{ph}" class="event"/>')
    for s, d, b, m in kw:  # the reduction of each interval, shaded
        if b > m:
            out.append(f'<rect x="{sx(s):.1f}" y="{sy(b):.1f}" width="{max(sx(s + d) - sx(s), 0.8):.1f}" '
                       f'height="{sy(m) - sy(b):.1f}" class="reduction"><title>{_clock(s)}: baseline {b:.3f} kW, '
                       f'metered {m:.3f} kW</title></rect>')
    for cls, index in (("baseline", 2), ("metered", 3)):
        points = []
        for row in kw:
            y = sy(row[index])
            points.append(f"{sx(row[0]):.1f},{y:.1f}")
            points.append(f"{sx(row[0] + row[1]):.1f},{y:.1f}")
        out.append(f'<polyline points="{" ".join(points)}" class="{cls}"/>')
    out.append(f'<text x="14" y="{TOP + ph / 2:.1f}" class="axis" text-anchor="middle" '
               f'transform="rotate(-90 14 {TOP + ph / 2:.1f})">average load (kW)</text>')
    # legend under the time axis: what each mark is
    y, x = H - 10, LEFT + pw / 2 - 170
    out.append(f'<line x1="{x:.1f}" x2="{x + 26:.1f}" y1="{y - 4}" y2="{y - 4}" class="baseline"/>'
               f'<text x="{x + 32:.1f}" y="{y}" class="axis">baseline</text>')
    x += 120
    out.append(f'<line x1="{x:.1f}" x2="{x + 26:.1f}" y1="{y - 4}" y2="{y - 4}" class="metered"/>'
               f'<text x="{x + 32:.1f}" y="{y}" class="axis">metered</text>')
    x += 115
    out.append(f'<rect x="{x:.1f}" y="{y - 11}" width="22" height="12" class="reduction"/>'
               f'<text x="{x + 28:.1f}" y="{y}" class="axis">reduction</text>')
    out.append("</svg>")
    return "\n".join(out)
