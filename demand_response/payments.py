"""Money leaving the contract, for the consumer and the utility alike: settling a metered
participant (which anyone may do, so two daemons can race to it) and withdrawing.

* ``settle_participant``: a settlement that lost the race to another daemon is not an
  error. The contract refuses the second one with ``WrongStage(consumer, Settled)``; that
  is recognised by the error's name and the participant's stage, and reported as
  ``None`` for the caller to log at INFO.
* ``pay_winners``: after an open request's selection, the utility (or anyone) claims every
  winning bid and sends each payout straight to its bidder (``claimAndPay``), so a household
  sends nothing after its bid; a payment the recipient refuses stays owed to it.
* ``withdraw_owed``: withdraws only an amount worth more than the gas the withdrawal
  costs, so no withdrawal of nothing (or of dust that prints as 0.000000 ETH) is sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from decimal import Decimal


from . import metrics
from .chain import Signer
from .contract import DemandReduction, Stage
from .errors import TransactionFailed
from .fees import convert
from .token import currency_of, is_ether
from .units import ETH, format_amount

log = logging.getLogger(__name__)

#: Gas a withdrawal may use (a transfer to an EOA plus the storage reset; ~30k measured).
WITHDRAW_GAS = 40_000
#: The contract error a second settlement of one participant meets.
SETTLED_ALREADY = "WrongStage"


@dataclass(frozen=True)
class Withdrawal:
    """A withdrawal that was sent: its transaction hash (0x-hex) and what it paid out (wei, or
    base units of the token withdrawn)."""

    tx: str
    wei: int


def tx_hex(tx_hash: Any) -> str:
    """A transaction hash as 0x-hex text."""
    text = tx_hash.hex() if isinstance(tx_hash, (bytes, bytearray)) else str(tx_hash)
    return text if text.startswith("0x") else "0x" + text


def settle_participant(dr: DemandReduction, signer: Signer, request_id: int, consumer: str) -> dict[str, Any] | None:
    """Settle ``consumer`` on metered request ``request_id``; the receipt, or None when
    someone else settled it first (a lost race: nothing to do, nothing went wrong), whether
    our transaction failed its estimate (``WrongStage``) or was mined after theirs and
    reverted on chain (no reason to decode)."""
    try:
        return dr.settle_delivery(signer, request_id, consumer)
    except TransactionFailed as exc:
        if exc.error in (SETTLED_ALREADY, None) and dr.participant_of(request_id, consumer).stage == Stage.SETTLED:
            return None
        raise


@dataclass(frozen=True)
class WinnersPaid:
    """What ``pay_winners`` sent: transaction hashes, payouts sent and payouts left owed (wei)."""

    txs: list[str]
    sent_wei: int
    sent: int
    deferred_wei: int
    deferred: int


def pay_winners(dr: DemandReduction, signer: Signer, request_id: int) -> WinnersPaid:
    """Pay every winning bid of settled open request ``request_id`` not claimed yet
    (``DemandReduction.claim_and_pay``, in chunks under the per-transaction gas cap)."""
    paid = WinnersPaid([], 0, 0, 0, 0)
    for receipt in dr.claim_and_pay(signer, request_id):
        sent = [e["args"]["amount"] for e in dr.events_in(receipt, "PayoutSent")]
        deferred = [e["args"]["amount"] for e in dr.events_in(receipt, "PaymentDeferred")]
        paid = WinnersPaid(paid.txs + [tx_hex(receipt["transactionHash"])], paid.sent_wei + sum(sent),
                           paid.sent + len(sent), paid.deferred_wei + sum(deferred), paid.deferred + len(deferred))
    return paid


def withdrawal_cost(signer: Signer) -> int:
    """The most a withdrawal costs in gas fees now (wei)."""
    fields = signer.fees().fields
    return WITHDRAW_GAS * int(fields.get("maxFeePerGas", fields.get("gasPrice", 0)))


def withdraw_owed(dr: DemandReduction, signer: Signer, token: str | None = None,
                  per_eth: Decimal | None = None) -> Withdrawal | None:
    """Withdraw what the contract owes ``signer`` (in ether, or in ``token``, an ERC-20) if it is
    worth more than the withdrawal's gas; None (and nothing sent) otherwise. The amount left
    stays owed for a later withdrawal. A token balance is compared with the gas through
    ``per_eth`` (token units per ETH); without it any balance is withdrawn."""
    owed = dr.owed(signer.address, token)
    if is_ether(token):
        metrics.set_owed(signer.address, owed)
    if owed <= 0:
        return None
    cost = withdrawal_cost(signer)
    if is_ether(token):
        if owed <= cost:
            log.info("%s: leaving %d wei owed in the contract: less than the %d wei a withdrawal would cost in gas",
                     signer.label, owed, cost)
            return None
    elif per_eth is not None:
        cur = currency_of(dr.w3, token)
        cost_units = convert(cost, ETH, cur, per_eth)
        if owed <= cost_units:
            log.info("%s: leaving %s owed in the contract: less than the %s a withdrawal would cost in gas",
                     signer.label, format_amount(owed, cur), format_amount(cost_units, cur))
            return None
    receipt = dr.withdraw(signer, token)
    if is_ether(token):
        metrics.set_owed(signer.address, 0)
    return Withdrawal(tx_hex(receipt["transactionHash"]), owed)
