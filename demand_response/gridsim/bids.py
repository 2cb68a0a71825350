"""Bid curves: from device flexibility to monotone (watts, wei/kWh) step curves.

Slice pricing (all in $/kWh, converted with ``usd_per_eth``):

* HVAC (TESP ``hvac_agent`` ramp bidding): a slice whose cumulative cut raises
  the end-of-window air temperature by ``dT`` is priced
  ``mean + dT * ramp * std / range`` where ``range`` is the comfort room
  (band limit minus setpoint).
* water heater: ``price * (1 + 0.5 * depth)``, depth = share of the tank's
  temperature room used.
* EV: ``price * (1 + used)``, used = share of the post-window charging capacity
  needed to still meet the departure deadline.
* battery: value of the energy, ``(retail / rte + degradation) * (1 + 0.25 * depth)``,
  depth = share of the usable state of charge used.

Steps of all devices are merged and sorted by price; equal prices are made
strictly increasing by adding 1 wei where needed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..artifacts import atomic_write_text
from .devices import BATTERY, EV, HVAC, WATER_HEATER, Flexibility, device_flexibility
from .population import Population, make_population
from .weather import DEFAULT_USD_PER_ETH, Request, as_request

BidCurve = list[tuple[int, int]]
_BIG = np.iinfo(np.int64).max


@dataclass
class BidArrays:
    """Vectorised bid curves: row ``i`` holds household ``index[i]``'s steps.

    ``watts``/``price``/``device`` are (N, S); only the first ``n_steps[i]`` entries
    of row ``i`` are valid (sorted by strictly increasing price).
    """

    index: np.ndarray
    watts: np.ndarray
    price: np.ndarray
    device: np.ndarray
    n_steps: np.ndarray

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def curve(self, i: int) -> BidCurve:
        """Bid curve of row ``i`` as ``[(watts, price_wei_per_kwh), ...]``."""
        k = int(self.n_steps[i])
        return list(zip(self.watts[i, :k].tolist(), self.price[i, :k].tolist()))

    def to_lists(self) -> list[BidCurve]:
        """All curves as Python lists (cost grows with N; ~0.3 s per 100k households)."""
        w, p, ns = self.watts.tolist(), self.price.tolist(), self.n_steps.tolist()
        return [list(zip(wr[:k], pr[:k])) for wr, pr, k in zip(w, p, ns)]

    def total_watts(self) -> np.ndarray:
        """Offered watts per household."""
        return self.watts.sum(axis=1)


def _slices(r_max: np.ndarray, k_max: int, min_step_w: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``r_max`` into up to ``k_max`` near-equal integer slices of >= ``min_step_w``.

    Returns (slice watts (N, k_max) int64, cumulative watts at each slice end).
    """
    r_int = np.floor(np.clip(r_max, 0.0, None)).astype(np.int64)
    k_eff = np.clip(r_int // max(1, int(min_step_w)), 0, k_max)
    ks = np.arange(1, k_max + 1)[None, :]
    safe_k = np.maximum(k_eff, 1)[:, None]
    cum = (r_int[:, None] * np.minimum(ks, safe_k)) // safe_k
    cum = np.where(k_eff[:, None] > 0, cum, 0)
    sl = np.diff(np.concatenate([np.zeros((r_int.size, 1), dtype=np.int64), cum], axis=1), axis=1)
    sl = np.where(ks <= k_eff[:, None], sl, 0)
    return sl, cum


def _device_steps(pop: Population, flex: Flexibility, *, hvac_slices: int, other_slices: int,
                  min_step_w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps for all devices: watts (N,S) int64, price $/kWh (N,S), device code (N,S)."""
    d = flex.duration_s
    parts_w, parts_p, parts_d = [], [], []

    w, cum = _slices(flex.hvac_w, hvac_slices, min_step_w)
    dtemp = flex.hvac_cop[:, None] * cum * flex.hvac_g[:, None]
    rng = np.where(flex.hvac_range_c > 0, flex.hvac_range_c, 1.0)[:, None]
    p = (pop.comfort_price_mean_usd[:, None]
         + dtemp * pop.comfort_ramp[:, None] * pop.comfort_price_std_usd[:, None] / rng)
    parts_w.append(w), parts_p.append(p), parts_d.append(np.full(w.shape, HVAC, np.int8))

    w, cum = _slices(flex.wh_w, other_slices, min_step_w)
    room_wh = pop.wh_capacity_j_per_k * (pop.wh_setpoint_c - pop.wh_min_c) / 3600.0
    depth = cum * d / 3600.0 / np.where(room_wh > 0, room_wh, 1.0)[:, None]
    p = pop.wh_price_usd[:, None] * (1.0 + 0.5 * depth)
    parts_w.append(w), parts_p.append(p), parts_d.append(np.full(w.shape, WATER_HEATER, np.int8))

    w, cum = _slices(flex.ev_w, other_slices, min_step_w)
    cap = np.where(flex.ev_slack_wh > 0, flex.ev_slack_wh, 1.0)[:, None]
    used = (cum * d / 3600.0 + flex.ev_remaining_wh[:, None]) / cap
    p = pop.ev_price_usd[:, None] * (1.0 + used)
    parts_w.append(w), parts_p.append(p), parts_d.append(np.full(w.shape, EV, np.int8))

    w, cum = _slices(flex.bat_w, other_slices, min_step_w)
    usable = np.where(flex.bat_usable_wh > 0, flex.bat_usable_wh, 1.0)[:, None]
    depth = cum * d / 3600.0 / np.sqrt(pop.bat_rte)[:, None] / usable
    value = pop.retail_price_usd / pop.bat_rte + pop.bat_degradation_usd
    p = value[:, None] * (1.0 + 0.25 * depth)
    parts_w.append(w), parts_p.append(p), parts_d.append(np.full(w.shape, BATTERY, np.int8))

    return np.concatenate(parts_w, axis=1), np.concatenate(parts_p, axis=1), np.concatenate(parts_d, axis=1)


def fleet_bids(pop: Population, request: "Request | Mapping[str, Any]", *,
               usd_per_eth: float = DEFAULT_USD_PER_ETH, hvac_slices: int = 4, other_slices: int = 2,
               min_step_w: int = 50, dt_s: float = 300.0, safety: float = 0.98,
               flex: Flexibility | None = None) -> BidArrays:
    """Vectorised bid curves for every household of ``pop`` (the fast path).

    Steps priced above ``request.max_price_wei_per_kwh`` are dropped.  The sum
    of each household's steps never exceeds the whole-window feasible reduction
    (:func:`~demand_response.gridsim.devices.device_flexibility`).
    """
    req = as_request(request)
    if usd_per_eth <= 0:
        raise ValueError("usd_per_eth must be > 0")
    fx = flex if flex is not None else device_flexibility(pop, req, dt_s=dt_s, safety=safety)
    w, p_usd, dev = _device_steps(pop, fx, hvac_slices=hvac_slices, other_slices=other_slices,
                                  min_step_w=min_step_w)
    wei = np.maximum(np.rint(p_usd * (1e18 / usd_per_eth)), 1.0).astype(np.int64)
    cap = _BIG if req.max_price_wei_per_kwh is None else int(req.max_price_wei_per_kwh)
    valid = (w > 0) & (wei <= cap)
    key = np.where(valid, wei, _BIG)
    order = np.argsort(key, axis=1, kind="stable")
    w = np.take_along_axis(w, order, axis=1)
    wei = np.take_along_axis(wei, order, axis=1)
    dev = np.take_along_axis(dev, order, axis=1)
    valid = np.take_along_axis(valid, order, axis=1)
    # strictly increasing prices on the valid prefix: q_k = max_{j<=k}(p_j - j) + k
    ks = np.arange(w.shape[1], dtype=np.int64)[None, :]
    q = np.maximum.accumulate(np.where(valid, wei - ks, np.iinfo(np.int64).min // 2), axis=1) + ks
    valid &= q <= cap
    wei = np.where(valid, q, 0)
    w = np.where(valid, w, 0)
    dev = np.where(valid, dev, 0).astype(np.int8)
    return BidArrays(index=pop.index.copy(), watts=w, price=wei, device=dev,
                     n_steps=valid.sum(axis=1).astype(np.int64))


def household_bids(pop: Population, request: "Request | Mapping[str, Any]", **kwargs: Any) -> list[BidCurve]:
    """Bid curve of every household as ``[(watts, price_wei_per_kwh), ...]`` lists.

    Same keyword arguments as :func:`fleet_bids`.
    """
    return fleet_bids(pop, request, **kwargs).to_lists()


def bids_for_request(request: "Request | Mapping[str, Any]", household_index: int = 0, seed: int = 0,
                     n_households: int | None = None, usd_per_eth: float = DEFAULT_USD_PER_ETH,
                     outdoor_max_c: float | None = None, utc_offset_hours: float | None = None,
                     **population_overrides: Any) -> BidCurve:
    """Bid curve for one simulated household, fitted to ``request`` (consumer daemon entry point).

    ``request`` is a :class:`Request` or a mapping with ``event_start``/``event_end``
    (or ``start``/``end``) and optionally ``max_price_wei_per_kwh``.  Household
    parameters depend only on ``(seed, household_index)``; ``n_households``
    only validates the index.  Returns ``[(watts, price_wei_per_kwh), ...]`` with
    strictly increasing prices (possibly empty).
    """
    req = as_request(request, outdoor_max_c=outdoor_max_c, utc_offset_hours=utc_offset_hours)
    n = household_index + 1 if n_households is None else int(n_households)
    if not 0 <= household_index < n:
        raise ValueError(f"household_index {household_index} outside population of {n}")
    pop = make_population(household_index + 1, seed, **population_overrides).subset([household_index])
    return fleet_bids(pop, req, usd_per_eth=usd_per_eth).curve(0)


def _is_curve(obj: Any) -> bool:
    if isinstance(obj, BidArrays):
        return False
    seq = list(obj)
    return not seq or (isinstance(seq[0], (tuple, list)) and len(seq[0]) == 2
                       and all(np.isscalar(x) for x in seq[0]))


def _priced(curve: Iterable[Sequence[int]], currency: str | None = None,
            usd_per_eth: float = DEFAULT_USD_PER_ETH) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for watts, price in curve:
        watts, price = int(watts), int(price)
        if watts <= 0 or price <= 0:
            raise ValueError("bid watts and prices must be positive integers")
        if currency is None:
            out.append({"watts": watts, "price_wei_per_kwh": price})
        else:
            out.append({"watts": watts, "price": _usd_text(price, usd_per_eth)})
    return out


def _usd_text(wei_per_kwh: int, usd_per_eth: float) -> str:
    """A price the curves carry in wei/kWh (converted from $/kWh at ``usd_per_eth``) back in
    $/kWh, to a USD stablecoin's 6 decimals (at least 0.000001)."""
    usd = Decimal(wei_per_kwh) * Decimal(str(usd_per_eth)) / Decimal(10**18)
    return f"{max(usd.quantize(Decimal('0.000001')), Decimal('0.000001')):f}"


def bids_document(curves: Any, household: int | None = None, currency: str | None = None,
                  usd_per_eth: float = DEFAULT_USD_PER_ETH) -> dict[str, Any]:
    """JSON-ready document for :func:`write_bids` (see there for the formats); ``currency``
    (a USD stablecoin's symbol, 1 token = 1 USD) writes decimal prices in it instead of wei."""
    head: dict[str, Any] = {"version": 1, "source": "gridsim"}
    if currency is not None:
        head["currency"] = currency

    if _is_curve(curves):
        return {**head, "bids": _priced(curves, currency, usd_per_eth)}
    if isinstance(curves, BidArrays):
        ids = curves.index.tolist()
        lists = curves.to_lists()
    else:
        lists = [list(c) for c in curves]
        ids = list(range(len(lists)))
    if household is not None:
        if household not in ids:
            raise ValueError(f"household {household} not in curves")
        return {**head, "bids": _priced(lists[ids.index(household)], currency, usd_per_eth)}
    return {**head,
            "fleet": [{"household": int(h), "bids": _priced(c, currency, usd_per_eth)} for h, c in zip(ids, lists)]}


def write_bids(path: "str | os.PathLike[str]", curves: Any, household: int | None = None,
               currency: str | None = None, usd_per_eth: float = DEFAULT_USD_PER_ETH) -> str:
    """Write bids as JSON atomically (temp file in the same directory + ``os.replace``).

    * ``curves`` a single curve ``[(watts, price), ...]`` -> single household document
      ``{"version": 1, "source": "gridsim", "bids": [{"watts", "price_wei_per_kwh"}, ...]}``.
    * ``curves`` a list of curves or :class:`BidArrays` and ``household=None`` -> fleet document
      ``{"version": 1, "source": "gridsim", "fleet": [{"household": i, "bids": [...]}, ...]}``.
    * ``curves`` a list of curves / BidArrays and ``household=i`` -> single document for household i.

    ``currency`` (a USD stablecoin's symbol) writes ``"currency"`` and decimal ``"price"``s
    in it ($/kWh, 6 decimals) instead of ``price_wei_per_kwh``.

    Returns the path written.
    """
    doc = bids_document(curves, household, currency, usd_per_eth)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # compact for fleets, which can be large
    text = json.dumps(doc, separators=(",", ":")) if "fleet" in doc else json.dumps(doc, indent=2)
    atomic_write_text(path, text + "\n")
    return path
