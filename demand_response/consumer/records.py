"""The one builder of a consumer's ``results.json`` record (open, metered or cancelled)."""

from __future__ import annotations

import time
from typing import Any, Sequence

from ..contract import BidInfo, RequestInfo
from ..results import net_wei
from ..units import WEI_PER_ETH as ETH


def result_record(
    *,
    chain_id: int,
    contract: str,
    request_id: int,
    account: str,
    label: str,
    status: str,
    info: RequestInfo | None = None,
    bids: Sequence[BidInfo] = (),
    accepted_watts: int = 0,
    payout_wei: int = 0,
    bid_txs: Sequence[str] = (),
    bid_at: int | None = None,
    claim_tx: str | None = None,
    withdraw_tx: str | None = None,
    withdrawn_wei: int = 0,
    gas_wei: int = 0,
    paid_wei: int | None = None,
    penalty_wei: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """A record of what ``account`` got in ``request_id``: its identity (chain id, contract,
    request id, account), the outcome (``status``: won, lost or cancelled; accepted watts,
    payout), the request's figures when ``info`` is given, our bids, the transactions and,
    in ``extra``, the figures of a metered request (promised, delivered...).

    Money, integers in wei: ``paid_wei`` (what the request paid us: the payout unless
    given), ``gas_wei`` (what our transactions for it cost, ``fees.gas_spent``),
    ``penalty_wei`` (bond lost) and ``net_wei`` = paid − penalty − gas (``results.net_wei``)."""
    record: dict[str, Any] = {
        "chain_id": chain_id, "contract": contract, "request_id": request_id, "account": account,
        "label": label, "status": status,
    }
    if info is not None:
        record.update({
            "rule": info.rule.name.lower(), "target_kw": info.target_watts / 1000,
            "bids": [{"bid_id": b.bid_id, "watts": b.watts, "price_wei_per_kwh": b.price,
                      "cancelled": b.cancelled, "accepted_watts": b.accepted_watts} for b in bids],
            "offered_kw": sum(b.watts for b in bids if not b.cancelled) / 1000,
            "clearing_price_wei_per_kwh": info.clearing_price,
            "event_start": info.event_start, "event_end": info.event_end,
        })
    record.update({
        "accepted_watts": accepted_watts, "accepted_kw": accepted_watts / 1000,
        "payout_wei": payout_wei, "payout_eth": payout_wei / ETH, "bid_txs": list(bid_txs),
    })
    paid = payout_wei if paid_wei is None else paid_wei
    record.update({"paid_wei": paid, "gas_wei": gas_wei, "penalty_wei": penalty_wei,
                   "net_wei": net_wei(paid, gas_wei, penalty_wei)})
    if status != "cancelled":
        record.update({"claim_tx": claim_tx, "withdraw_tx": withdraw_tx, "withdrawn_wei": withdrawn_wei,
                       "bid_at": bid_at})
    record.update(extra)
    record["recorded_at"] = int(time.time())
    return record
