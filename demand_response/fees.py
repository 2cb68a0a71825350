"""What taking part costs: transaction fees with the L1 data fee of L2 chains included.

A transaction's cost in the chain's native currency is

* **l1** (Ethereum, Energy Web, local chains): gas used × effective gas price;
* **op-stack** (Base, OP Mainnet): L2 gas used × effective gas price + an L1 data fee. The
  chain reports that fee through its ``GasPriceOracle`` predeploy (``getL1Fee(bytes)``,
  since Fjord also ``getL1FeeUpperBound(uint256)``) and in each receipt's ``l1Fee``;
* **arbitrum** (Arbitrum One): gas used × effective gas price, where the gas already
  includes the L1 share; before sending, that share is priced by ``ArbGasInfo``
  (``getPricesInWei()``: wei per L1 calldata byte).

Three jobs live here:

1. ``quote_fees`` reads today's fees from a chain (gas price, oracle parameters) into a
   ``FeeQuote``; ``FeeQuote.tx_cost`` prices a transaction of a given gas and size.
2. ``receipt_cost`` / ``gas_spent``: what a household's own transactions actually cost, from
   their receipts (the "gas spent" field of a results record).
3. ``participation_cost`` + ``worth_bidding``: before bidding, the cost of the transactions
   one event needs, in the settlement currency, against the payout at the household's ask.

web3 is only imported inside the functions that talk to a chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any, Iterable, Mapping, Sequence

from .networks import FeeModel
from .units import ETH, Currency, ReferenceRate, format_amount
from .errors import ChainError

#: OP Stack ``GasPriceOracle`` predeploy (every OP Stack chain).
OP_GAS_PRICE_ORACLE = "0x420000000000000000000000000000000000000F"
#: Arbitrum ``ArbGasInfo`` precompile (every Arbitrum chain).
ARB_GAS_INFO = "0x000000000000000000000000000000000000006C"
#: Arbitrum ``NodeInterface`` (virtual: answered by the node's RPC, no code on chain). Not used
#: here: ``gasEstimateL1Component`` only exists on a real Arbitrum node.
ARB_NODE_INTERFACE = "0x00000000000000000000000000000000000000C8"

# Fjord's L1 cost regression (OP Stack specs, "Fjord L1-Cost fee changes"), scaled by 1e6.
FJORD_INTERCEPT = -42_585_600
FJORD_FASTLZ_COEF = 836_500
FJORD_MIN_TX_SIZE = 100
#: Bytes a signature adds to an unsigned transaction (the oracles add the same 68).
SIGNATURE_BYTES = 68

_OP_ABI = [
    {"name": "getL1Fee", "type": "function", "stateMutability": "view",
     "inputs": [{"name": "_data", "type": "bytes"}], "outputs": [{"name": "", "type": "uint256"}]},
    {"name": "getL1FeeUpperBound", "type": "function", "stateMutability": "view",
     "inputs": [{"name": "_unsignedTxSize", "type": "uint256"}], "outputs": [{"name": "", "type": "uint256"}]},
    *({"name": name, "type": "function", "stateMutability": "view", "inputs": [],
       "outputs": [{"name": "", "type": kind}]}
      for name, kind in (("l1BaseFee", "uint256"), ("blobBaseFee", "uint256"),
                         ("baseFeeScalar", "uint32"), ("blobBaseFeeScalar", "uint32"))),
]
_ARB_ABI = [
    {"name": "getPricesInWei", "type": "function", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "uint256"}] * 6},
]


class FeeError(ChainError, RuntimeError):
    """A chain's fee oracle could not be read; ``str()`` is one line naming the chain and the fix."""


# -- the L1 data fee ------------------------------------------------------------------------


@dataclass(frozen=True)
class OpL1Params:
    """The inputs of an OP Stack chain's L1 data fee (read from its GasPriceOracle)."""

    l1_base_fee: int  # wei, Ethereum's base fee as the L2 last saw it
    blob_base_fee: int  # wei, Ethereum's blob base fee as the L2 last saw it
    base_fee_scalar: int  # scaled by 1e6
    blob_base_fee_scalar: int  # scaled by 1e6

    def l1_fee_for_compressed(self, fastlz_size: int) -> int:
        """Fjord: ``max(100e6, intercept + coef × size) × (16 × scalar × base + blobScalar × blob) / 1e12``."""
        fee_scaled = self.base_fee_scalar * 16 * self.l1_base_fee + self.blob_base_fee_scalar * self.blob_base_fee
        estimated = max(FJORD_MIN_TX_SIZE * 10**6, FJORD_INTERCEPT + FJORD_FASTLZ_COEF * fastlz_size)
        return estimated * fee_scaled // 10**12

    def upper_bound(self, unsigned_size: int) -> int:
        """The oracle's ``getL1FeeUpperBound(unsigned_size)``: no compression credit beyond LZ4's bound."""
        size = unsigned_size + SIGNATURE_BYTES
        return self.l1_fee_for_compressed(size + size // 255 + 16)


@dataclass(frozen=True)
class FeeQuote:
    """Today's fees on one chain: enough to price any transaction without asking again."""

    model: FeeModel
    gas_price: int  # wei per gas a transaction pays now (base fee + tip, or the legacy price)
    op: OpL1Params | None = None  # op-stack only
    l1_per_byte: int = 0  # arbitrum only: wei per L1 calldata byte (getPricesInWei()[1])

    def l1_fee(self, unsigned_size: int) -> int:
        """The L1 data fee of a transaction of ``unsigned_size`` bytes (an upper bound; 0 on L1)."""
        if self.model is FeeModel.OP_STACK and self.op is not None:
            return self.op.upper_bound(unsigned_size)
        if self.model is FeeModel.ARBITRUM:
            return self.l1_per_byte * (unsigned_size + SIGNATURE_BYTES)
        return 0

    def tx_cost(self, gas: int, unsigned_size: int) -> int:
        """Wei a transaction of ``gas`` and ``unsigned_size`` bytes costs at these fees."""
        return gas * self.gas_price + self.l1_fee(unsigned_size)


def current_gas_price(w3: Any, tip: int | None = None) -> int:
    """Wei per gas a transaction sent now pays: the latest base fee plus the node's suggested
    tip (EIP-1559 chains), or the node's gas price (legacy chains such as Energy Web)."""
    base = w3.eth.get_block("latest").get("baseFeePerGas")
    if base is None:
        return int(w3.eth.gas_price)
    if tip is None:
        try:
            tip = int(w3.eth.max_priority_fee)
        except Exception:  # a node without eth_maxPriorityFeePerGas
            tip = 0
    return int(base) + int(tip)


def _oracle(w3: Any, address: str, abi: list, name: str) -> Any:
    if not w3.eth.get_code(address):
        raise FeeError(f"no {name} at {address} on chain {w3.eth.chain_id}: this is not the chain the "
                       "network profile says; check NETWORK and RPC_URL")
    return w3.eth.contract(address=w3.to_checksum_address(address), abi=abi)


def quote_fees(w3: Any, model: FeeModel | str, tip: int | None = None) -> FeeQuote:
    """Read today's fees from the chain ``w3`` is connected to, for fee model ``model``."""
    model = FeeModel(model)
    price = current_gas_price(w3, tip)
    if model is FeeModel.OP_STACK:
        f = _oracle(w3, OP_GAS_PRICE_ORACLE, _OP_ABI, "GasPriceOracle").functions
        values = _read("GasPriceOracle", lambda: [int(c().call()) for c in (
            f.l1BaseFee, f.blobBaseFee, f.baseFeeScalar, f.blobBaseFeeScalar)])
        return FeeQuote(model, price, op=OpL1Params(*values))
    if model is FeeModel.ARBITRUM:
        f = _oracle(w3, ARB_GAS_INFO, _ARB_ABI, "ArbGasInfo").functions
        prices = _read("ArbGasInfo", lambda: f.getPricesInWei().call())
        return FeeQuote(model, price, l1_per_byte=int(prices[1]))
    return FeeQuote(model, price)


def _read(name: str, call: Any) -> Any:
    """An oracle read; a revert or a malformed answer becomes one FeeError line."""
    try:
        return call()
    except Exception as exc:  # ContractLogicError, BadFunctionCallOutput, decoding errors
        raise FeeError(f"the {name} did not answer ({type(exc).__name__}); this chain does not "
                       "implement the fee model its network profile says; check NETWORK") from None


def op_l1_fee(w3: Any, unsigned_tx: bytes) -> int:
    """The OP Stack oracle's own L1 fee for an unsigned RLP-encoded transaction (``getL1Fee``)."""
    oracle = _oracle(w3, OP_GAS_PRICE_ORACLE, _OP_ABI, "GasPriceOracle")
    return int(_read("GasPriceOracle", oracle.functions.getL1Fee(bytes(unsigned_tx)).call))


def op_l1_fee_upper_bound(w3: Any, unsigned_size: int) -> int:
    """The OP Stack oracle's upper bound for a transaction of this size (``getL1FeeUpperBound``, Fjord)."""
    oracle = _oracle(w3, OP_GAS_PRICE_ORACLE, _OP_ABI, "GasPriceOracle")
    return int(_read("GasPriceOracle", oracle.functions.getL1FeeUpperBound(int(unsigned_size)).call))


def unsigned_tx_bytes(tx: Mapping[str, Any]) -> bytes:
    """The unsigned RLP encoding the OP oracle prices: EIP-1559 (type 2) when the transaction
    has ``maxFeePerGas``, else legacy (EIP-155 form, with the chain id)."""
    import rlp

    def num(key: str) -> int:
        value = tx.get(key, 0)
        return int(value, 16) if isinstance(value, str) else int(value or 0)

    to = tx.get("to")
    to_bytes = bytes.fromhex(str(to).removeprefix("0x")) if to else b""
    data = tx.get("data") or tx.get("input") or b""
    data = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
    if "maxFeePerGas" in tx:
        fields = [num("chainId"), num("nonce"), num("maxPriorityFeePerGas"), num("maxFeePerGas"),
                  num("gas"), to_bytes, num("value"), data, []]
        return b"\x02" + rlp.encode(fields)
    return rlp.encode([num("nonce"), num("gasPrice"), num("gas"), to_bytes, num("value"), data,
                       num("chainId"), 0, 0])


# -- what a household actually spent --------------------------------------------------------


@dataclass(frozen=True)
class TxCost:
    """What one mined transaction cost its sender, in the native currency's base units."""

    gas_used: int
    gas_price: int  # effective wei per gas
    l1_fee: int = 0  # OP Stack's L1 data fee (0 elsewhere; on Arbitrum it is inside gas_used)

    @property
    def total(self) -> int:
        """gas used × effective gas price + L1 data fee."""
        return self.gas_used * self.gas_price + self.l1_fee


def _int(value: Any) -> int:
    if value is None:
        return 0
    return int(value, 16) if isinstance(value, str) else int(value)


def receipt_cost(receipt: Mapping[str, Any]) -> TxCost:
    """The cost of a mined transaction from its receipt (web3 AttributeDict or raw JSON-RPC).

    Uses ``effectiveGasPrice`` (every post-London node, ganache and anvil included) and adds
    ``l1Fee`` where the chain reports one (OP Stack). A failed (reverted) transaction costs
    its gas too, so it is counted.
    """
    price = receipt.get("effectiveGasPrice")
    if price is None:
        raise FeeError("the receipt has no effectiveGasPrice; the node is too old to report what a "
                       "transaction paid (upgrade it or use another RPC endpoint)")
    return TxCost(_int(receipt.get("gasUsed")), _int(price), _int(receipt.get("l1Fee")))


def gas_spent(receipts: Iterable[Mapping[str, Any]]) -> int:
    """Total native base units a household's transactions cost (the results record's "gas spent")."""
    return sum(receipt_cost(r).total for r in receipts)


def format_gas_price(wei_per_gas: int) -> str:
    """A gas price for people, always in gwei, to three significant digits (whole gwei from
    100 up): ``1 gwei``, ``1.04 gwei``, ``0.002 gwei``, ``123 gwei``."""
    gwei = Decimal(int(wei_per_gas)) / Decimal(10**9)
    if not gwei:
        return "0 gwei"
    rounded = gwei.quantize(Decimal(1).scaleb(min(0, gwei.adjusted() - 2)))
    return f"{format(rounded.normalize(), 'f')} gwei"


# -- what taking part will cost -------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One transaction a household sends for an event."""

    name: str
    gas: int  # today's pinned figure (tests/contract/test_gas.py)
    calldata: int  # calldata bytes with one bid

    @property
    def unsigned_size(self) -> int:
        """Approximate unsigned EIP-1559 transaction size: calldata + 48 bytes of envelope."""
        return self.calldata + _ENVELOPE_BYTES


# type + list prefix 3, chain id 4, nonce 3, two fee caps 10, gas 4, to 21, value 1, data prefix 2, access list 1
_ENVELOPE_BYTES = 48

# Gas pinned in tests/contract/test_gas.py (PINNED); a unit test keeps these equal to the pins.
BID = Step("bid", 59_696, 4 + 3 * 32 + 2 * 64)  # submitBids, 1 bid (median)
CLAIM = Step("claim", 61_971, 4 + 4 * 32)  # claim(requestId, [bidId])
WITHDRAW = Step("withdraw", 33_196, 4)
POST_BOND = Step("post bond", 73_276, 4 + 32)  # metered: postBond(requestId) with the bond
METERED_BID = Step("bid", 82_352, 4 + 3 * 32 + 2 * 64)  # submitBids on a metered request
REPORT = Step("report delivery", 34_805, 4 + 2 * 32)
COMMIT = Step("commit with bond", 98_039, 4 + 2 * 32)  # commitBids(requestId, commitment), first
REVEAL = Step("reveal", 94_644, 4 + 4 * 32 + 2 * 64)  # revealBids, 1 bid
#: A household's 1-bid entry relayed by ``submitSignedBids`` in a batch of 100 (the household at a
#: later request than its first of 256): gas the RELAYER pays for it; the household sends nothing.
#: Calldata: the entry's head and offsets (5 words), two 1-element arrays and a 65-byte signature.
RELAYED_BID = Step("relayed bid (the relayer's gas)", 44_861, 5 * 32 + 2 * 64 + 32 + 96)

#: The transactions a household sends for one event, per kind of market. On the open market
#: the utility's claimAndPay pays the winners, so a household sends its bid and nothing else;
#: "open-self-claim" is what it sends when nobody pays it (claim, then withdraw). On a
#: metered request the utility meters each winner (``meterDelivery``) and the payout and
#: bond are pushed to the household, so it sends its bond and bid (or, sealed, its commit
#: with the bond and its reveal); "-self-report" adds the report it sends when the utility
#: has not metered it by near the report deadline (docs/mv.md).
PLANS: dict[str, tuple[Step, ...]] = {
    "open": (BID,),
    "open-self-claim": (BID, CLAIM, WITHDRAW),
    "metered": (POST_BOND, METERED_BID),
    "metered-self-report": (POST_BOND, METERED_BID, REPORT),
    "sealed-metered": (COMMIT, REVEAL),
    "sealed-metered-self-report": (COMMIT, REVEAL, REPORT),
}


def plan_gas(plan: str) -> int:
    """The gas of one event's transactions in ``PLANS[plan]``."""
    return sum(step.gas for step in PLANS[plan])


@dataclass(frozen=True)
class ParticipationCost:
    """What one event's transactions cost a household."""

    plan: str
    transactions: int
    gas: int
    native_cost: int  # base units of the native currency, L1 data fees included
    l1_fee: int  # the L1 data fee part of native_cost
    cost: int  # in the settlement currency's base units (rounded up)
    currency: Currency  # the settlement currency

    def describe(self, native: Currency = ETH, rate: ReferenceRate | None = None) -> str:
        """One line: ``3 transactions, 179,375 gas: 0.000179 ETH (≈ $0.54)``."""
        steps = self.transactions
        text = (f"{steps} transaction{'s' if steps != 1 else ''}, {self.gas:,} gas: "
                f"{format_amount(self.native_cost, native, rate=rate)}")
        if self.currency != native:
            text += f" = {format_amount(self.cost, self.currency)}"
        return text


def convert(native_units: int, native: Currency, settlement: Currency,
            settlement_per_native: Decimal | int | str | None) -> int:
    """Native base units in the settlement currency's base units, rounded up (a cost is never
    under-stated). ``settlement_per_native`` is e.g. 3000 (USDC per ETH); None when both are the same."""
    if settlement == native:
        return int(native_units)
    if settlement_per_native is None:
        raise ValueError(f"a rate {settlement.symbol} per {native.symbol} is needed to compare "
                         f"{native.symbol} fees with a {settlement.symbol} payout")
    with localcontext() as ctx:
        ctx.prec = 100
        value = (Decimal(int(native_units)) * Decimal(str(settlement_per_native))
                 * Decimal(settlement.one) / Decimal(native.one))
        return int(value.to_integral_value(rounding=ROUND_CEILING))


def participation_cost(plan: str | Sequence[Step], quote: FeeQuote, *, native: Currency = ETH,
                       settlement: Currency = ETH,
                       settlement_per_native: Decimal | int | str | None = None) -> ParticipationCost:
    """The cost of one event's transactions (``PLANS[plan]``) at ``quote``'s fees, in ``settlement``."""
    steps = PLANS[plan] if isinstance(plan, str) else tuple(plan)
    name = plan if isinstance(plan, str) else "+".join(s.name for s in steps)
    gas = sum(s.gas for s in steps)
    l1 = sum(quote.l1_fee(s.unsigned_size) for s in steps)
    native_cost = gas * quote.gas_price + l1
    return ParticipationCost(name, len(steps), gas, native_cost, l1,
                             convert(native_cost, native, settlement, settlement_per_native), settlement)


@dataclass(frozen=True)
class Decision:
    """Whether an offer is worth sending, and why, as a line a person reads."""

    bid: bool
    reason: str


def worth_bidding(payout_at_ask: int, cost: int, margin: float | Decimal = 0,
                  currency: Currency = ETH) -> Decision:
    """Bid only if the payout at the household's own ask covers the cost of taking part with
    ``margin`` to spare: ``payout ≥ cost × (1 + margin)``. Amounts in ``currency``'s base units;
    ``margin`` 0.25 means the payout must exceed the cost by 25 %.

    The payout at the ask is the least a winning bid earns (``market.payout(watts, duration,
    ask)``); a uniform clearing price can only raise it.
    """
    margin_d = Decimal(str(margin))
    if margin_d < 0:
        raise ValueError(f"margin must be 0 or more, got {margin}")
    needed = int((Decimal(int(cost)) * (1 + margin_d)).to_integral_value(rounding=ROUND_CEILING))
    pays, costs, need = (format_amount(x, currency) for x in (payout_at_ask, cost, needed))
    with_margin = f" with a {format((margin_d * 100).normalize(), 'f')} % margin" if margin_d else ""
    if payout_at_ask >= needed and payout_at_ask > 0:
        share = Decimal(int(cost)) * 100 / Decimal(int(payout_at_ask))
        part = "under 0.1" if share < Decimal("0.1") else f"{share:.1f}"
        return Decision(True, f"bid: pays at least {pays} at its ask; taking part costs {costs} "
                              f"({part} % of the payout)")
    return Decision(False, f"skip: pays {pays} at its ask, but taking part costs {costs}; "
                           f"it needs at least {need}{with_margin} (raise the price or offer more kW)")
