"""Where a consumer's offers come from: its bids file, or the household simulation."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..bids import Offer, from_pairs, load_bids
from ..contract import RequestInfo
from ..errors import BidsError

#: Offers for one request.
BidsProvider = Callable[[RequestInfo], Sequence[Offer]]


def file_bids(path: str | Path, agent_index: int = 0) -> BidsProvider:
    """Offers from a bids file, re-read for every request (edits apply to the next request)."""

    def provide(_info: RequestInfo) -> Sequence[Offer]:
        return load_bids(path).for_agent(agent_index)

    return provide


def gridsim_bids(household_index: int = 0, seed: int = 0, n_households: int | None = None) -> BidsProvider:
    """Offers from the household simulation, fitted to each request (imported lazily)."""
    try:
        from ..gridsim import bids_for_request
    except Exception as exc:  # ImportError, or numpy missing inside gridsim
        raise BidsError(
            f"--bids-source gridsim needs demand_response.gridsim ({type(exc).__name__}: {exc}); "
            "install the 'sim' extra (pip install '.[sim]') or use --bids-source file"
        ) from None

    def provide(info: RequestInfo) -> Sequence[Offer]:
        request = {"event_start": info.event_start, "event_end": info.event_end,
                   "max_price_wei_per_kwh": info.max_price}
        pairs = bids_for_request(request, household_index=household_index, seed=seed, n_households=n_households)
        return from_pairs(pairs, "gridsim", currency=None)  # fitted to the request's cap: its currency

    return provide
