"""gridsim: household flexibility, bid curves and feeder simulation for demand response.

Quick use::

    from demand_response.gridsim import Request, make_population, household_bids
    req = Request(event_start=1752598800, event_end=1752606000, outdoor_max_c=35)
    curves = household_bids(make_population(100, seed=1), req)

Needs numpy; plotting needs matplotlib and the feeder needs pandapower (both
imported lazily).  See docs/gridsim.md.
"""

from .bids import BidArrays, bids_document, bids_for_request, fleet_bids, household_bids, write_bids
from .commands import feeder_command, simulate_command
from .delivery import Delivery, delivered_reduction, simulate_delivery
from .devices import Flexibility, baseline_components, device_flexibility
from .history import History, simulate_history
from .feeder import FeederDay, clear_bids, feeder_day, feeder_delivered, suggest_request
from .plot import plot_feeder, plot_household
from .population import Population, PopulationParams, make_population
from .weather import DEFAULT_USD_PER_ETH, Request, as_request, usd_to_wei, wei_to_usd

__all__ = [
    "DEFAULT_USD_PER_ETH",
    "BidArrays",
    "Delivery",
    "FeederDay",
    "History",
    "Flexibility",
    "Population",
    "PopulationParams",
    "Request",
    "as_request",
    "baseline_components",
    "bids_document",
    "bids_for_request",
    "clear_bids",
    "delivered_reduction",
    "device_flexibility",
    "feeder_day",
    "feeder_delivered",
    "fleet_bids",
    "household_bids",
    "make_population",
    "plot_feeder",
    "plot_household",
    "simulate_command",
    "feeder_command",
    "simulate_delivery",
    "simulate_history",
    "suggest_request",
    "usd_to_wei",
    "wei_to_usd",
    "write_bids",
]
