"""The one builder of a consumer's ``results.json`` record (open, metered or cancelled)."""

from __future__ import annotations

import time
from typing import Any, Sequence

from decimal import Decimal

from ..contract import BidInfo, RequestInfo
from ..fees import convert
from ..results import net_wei
from ..units import ETH as ETHER, Currency, WEI_PER_ETH as ETH


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
    currency: Currency = ETHER,
    token: str | None = None,
    per_eth: Decimal | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A record of what ``account`` got in ``request_id``: its identity (chain id, contract,
    request id, account), the outcome (``status``: won, lost or cancelled; accepted watts,
    payout), the request's figures when ``info`` is given, our bids, the transactions and,
    in ``extra``, the figures of a metered request (promised, delivered...).

    Money, integers in wei: ``paid_wei`` (what the request paid us: the payout unless
    given), ``gas_wei`` (what our transactions for it cost, ``fees.gas_spent``),
    ``penalty_wei`` (bond lost) and ``net_wei`` = paid − penalty − gas (``results.net_wei``).

    A request in a token (``currency`` not ETH; ``token`` its address): the ``*_wei`` money
    arguments are base units of the token and are written as ``payout_units``, ``paid_units``
    and ``withdrawn_units``; ``gas_wei`` stays in wei. ``per_eth`` (token units per ETH, from
    ``USD_PER_ETH`` for a USD stablecoin) gives ``gas_units`` and ``net_units``; without it
    both are None (``results`` module docstring)."""
    if currency != ETHER:
        return _token_record(chain_id=chain_id, contract=contract, request_id=request_id, account=account,
                             label=label, status=status, info=info, bids=bids, accepted_watts=accepted_watts,
                             payout=payout_wei, bid_txs=bid_txs, bid_at=bid_at, claim_tx=claim_tx,
                             withdraw_tx=withdraw_tx, withdrawn=withdrawn_wei, gas_wei=gas_wei,
                             paid=payout_wei if paid_wei is None else paid_wei, currency=currency, token=token,
                             per_eth=per_eth, extra=extra)
    record: dict[str, Any] = {
        "chain_id": chain_id, "contract": contract, "request_id": request_id, "account": account,
        "label": label, "status": status,
    }
    record.update(_request_fields(info, bids, "wei"))
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


def _token_record(*, chain_id: int, contract: str, request_id: int, account: str, label: str, status: str,
                  info: RequestInfo | None, bids: Sequence[BidInfo], accepted_watts: int, payout: int,
                  bid_txs: Sequence[str], bid_at: int | None, claim_tx: str | None, withdraw_tx: str | None,
                  withdrawn: int, gas_wei: int, paid: int, currency: Currency, token: str | None,
                  per_eth: Decimal | None, extra: dict[str, Any]) -> dict[str, Any]:
    """``result_record`` of a request settled in a token: money in its base units, gas in wei."""
    record: dict[str, Any] = {
        "chain_id": chain_id, "contract": contract, "request_id": request_id, "account": account,
        "label": label, "status": status, "currency": currency.symbol, "currency_decimals": currency.decimals,
        "token": token,
    }
    record.update(_request_fields(info, bids, "units"))
    gas_units = convert(gas_wei, ETHER, currency, per_eth) if per_eth is not None else None
    record.update({
        "accepted_watts": accepted_watts, "accepted_kw": accepted_watts / 1000,
        "payout_units": payout, "bid_txs": list(bid_txs),
        "paid_units": paid, "gas_wei": gas_wei, "gas_units": gas_units,
        "net_units": None if gas_units is None else paid - gas_units,
        "per_eth": None if per_eth is None else str(per_eth),
    })
    if status != "cancelled":
        record.update({"claim_tx": claim_tx, "withdraw_tx": withdraw_tx, "withdrawn_units": withdrawn,
                       "bid_at": bid_at})
    # A metered request's promise is in the token; bonds (penalty, bond returned) are ether only.
    record.update({_TOKEN_KEYS.get(k, k): v for k, v in extra.items()})
    record["recorded_at"] = int(time.time())
    return record


def _request_fields(info: RequestInfo | None, bids: Sequence[BidInfo], unit: str) -> dict[str, Any]:
    """The request's figures and our bids in a record (none without ``info``); prices per kWh
    in ``unit``: "wei" in an ether request, "units" (base units of the token) in a token one."""
    if info is None:
        return {}
    return {
        "rule": info.rule.name.lower(), "target_kw": info.target_watts / 1000,
        "bids": [{"bid_id": b.bid_id, "watts": b.watts, f"price_{unit}_per_kwh": b.price,
                  "cancelled": b.cancelled, "accepted_watts": b.accepted_watts} for b in bids],
        "offered_kw": sum(b.watts for b in bids if not b.cancelled) / 1000,
        f"clearing_price_{unit}_per_kwh": info.clearing_price,
        "event_start": info.event_start, "event_end": info.event_end,
    }


#: ``extra`` keys of a metered record renamed in a token record (their amounts are in the token).
_TOKEN_KEYS = {"promised_payout_wei": "promised_payout_units"}
