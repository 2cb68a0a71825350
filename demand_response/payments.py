"""Money leaving the contract, for the consumer and the utility alike: settling a metered
participant (which anyone may do, so two daemons can race to it) and withdrawing.

* ``settle_participant``: a settlement that lost the race to another daemon is not an
  error. The contract refuses the second one with ``WrongStage(consumer, Settled)``; that
  is recognised by the error's name and the participant's stage, and reported as
  ``None`` for the caller to log at INFO.
* ``withdraw_owed``: withdraws only an amount worth more than the gas the withdrawal
  costs, so no withdrawal of nothing (or of dust that prints as 0.000000 ETH) is sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import metrics
from .chain import Signer
from .contract import DemandReduction, Stage
from .errors import TransactionFailed

log = logging.getLogger(__name__)

#: Gas a withdrawal may use (a transfer to an EOA plus the storage reset; ~30k measured).
WITHDRAW_GAS = 40_000
#: The contract error a second settlement of one participant meets.
SETTLED_ALREADY = "WrongStage"


@dataclass(frozen=True)
class Withdrawal:
    """A withdrawal that was sent: its transaction hash (0x-hex) and the wei it paid out."""

    tx: str
    wei: int


def tx_hex(tx_hash: Any) -> str:
    """A transaction hash as 0x-hex text."""
    text = tx_hash.hex() if isinstance(tx_hash, (bytes, bytearray)) else str(tx_hash)
    return text if text.startswith("0x") else "0x" + text


def settle_participant(dr: DemandReduction, signer: Signer, request_id: int, consumer: str) -> dict[str, Any] | None:
    """Settle ``consumer`` on metered request ``request_id``; the receipt, or None when
    someone else settled it first (a lost race: nothing to do, nothing went wrong)."""
    try:
        return dr.settle_delivery(signer, request_id, consumer)
    except TransactionFailed as exc:
        if exc.error == SETTLED_ALREADY and dr.participant_of(request_id, consumer).stage == Stage.SETTLED:
            return None
        raise


def withdrawal_cost(signer: Signer) -> int:
    """The most a withdrawal costs in gas fees now (wei)."""
    fields = signer.fees().fields
    return WITHDRAW_GAS * int(fields.get("maxFeePerGas", fields.get("gasPrice", 0)))


def withdraw_owed(dr: DemandReduction, signer: Signer) -> Withdrawal | None:
    """Withdraw what the contract owes ``signer`` if it is worth more than the withdrawal's
    gas; None (and nothing sent) otherwise. The amount left stays owed for a later withdrawal."""
    owed = dr.owed(signer.address)
    metrics.set_owed(signer.address, owed)
    if owed <= 0:
        return None
    cost = withdrawal_cost(signer)
    if owed <= cost:
        log.info("%s: leaving %d wei owed in the contract: less than the %d wei a withdrawal would cost in gas",
                 signer.label, owed, cost)
        return None
    receipt = dr.withdraw(signer)
    metrics.set_owed(signer.address, 0)
    return Withdrawal(tx_hex(receipt["transactionHash"]), owed)
