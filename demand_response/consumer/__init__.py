"""The consumer bidding daemon.

One ``ConsumerAgent`` is one household account. A ``ConsumerService`` runs one event
listener for the contract and hands every event to its agents: one agent for
``dr consumer run``, N for ``dr consumer fleet -n N``; the logic is the same.

For each request an agent hears while bidding is open, it loads its offers (``bids.json``
or gridsim), snaps them up to the request's price grid, skips those above the cap, and
submits the rest (at most 64 per transaction). Before bidding it asks the contract whether
it already bid there, so a restarted daemon never bids twice. When the request is settled
it claims its winning bids, withdraws (unless disabled) and appends one record to
``results.json``.

Modules, one job each:

* ``sources``: where offers come from (``file_bids``, ``gridsim_bids``);
* ``core``: what the protocols share (identity, notes, log lines, settle, withdraw, record);
* ``open_bids``, ``sealed_bids``, ``metered``: one protocol each;
* ``agent``: ``ConsumerAgent``, which routes events and requests to the protocols;
* ``notes``: the agent's typed record in the state file; ``records``: the one builder of a
  ``results.json`` record;
* ``service``: ``ConsumerService`` and ``AgentSpec``.
"""

from __future__ import annotations

from .agent import ConsumerAgent
from ..units import eth
from .records import result_record
from .service import EVENTS, TERMS_CHECK_INTERVAL, AgentSpec, ConsumerService, state_path_for
from .sources import BidsProvider, file_bids, gridsim_bids

__all__ = [
    "EVENTS", "TERMS_CHECK_INTERVAL", "AgentSpec", "BidsProvider", "ConsumerAgent", "ConsumerService", "eth",
    "file_bids", "gridsim_bids", "result_record", "state_path_for",
]
