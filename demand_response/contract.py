"""A typed wrapper around a deployed DemandReduction contract.

Calls return plain dataclasses; transactions go through a ``chain.Signer`` and revert
with ``TransactionFailed`` carrying the contract's custom error name and arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError
from web3.logs import DISCARD

from . import metrics
from .artifacts import load_artifact
from .chain import ChainError, Signer, TransactionFailed
from .errors import UserError
from .market import PricingRule
from .token import ZERO_ADDRESS, Erc20, is_ether

if TYPE_CHECKING:
    from .units import Currency

#: EIP-7825: a transaction may use at most 2^24 gas. anvil and ganache do not enforce it, so
#: the wrapper refuses to send anything above it.
TX_GAS_CAP = 2**24

MAX_UINT = 2**256 - 1
#: Every book slot of a request (26 slots of five price levels): ``sponsor_book``'s default mask.
ALL_BOOK_SLOTS = (1 << 26) - 1

#: Bids paid per ``claimAndPay`` transaction. The worst bid costs about 63,000 gas (a cold
#: recipient's first ether, 25,000, plus a recipient burning all of ``PAY_GAS`` and the
#: 2,300 stipend), so 200 stay below 12.6M gas, well under ``TX_GAS_CAP``.
CLAIM_PAY_CHUNK = 200
#: The same for a request in a token: the worst bid costs about 135,000 gas (a transfer or a
#: recipient's hook burning all of ``TOKEN_PAY_GAS``, 100,000, then a deferred credit), so 100
#: stay below 13.5M gas.
CLAIM_PAY_TOKEN_CHUNK = 100
#: Gas a ``claimAndPay`` bid may need beyond what an estimate saw (per currency: ether, token):
#: a recipient may accept cheaply under ``eth_estimateGas`` (gas price 0) and burn all of
#: ``PAY_GAS`` (``TOKEN_PAY_GAS``) plus the stipend when mined, then be credited (a
#: zero-to-non-zero write, 22,100) with two events instead of one: ~36,000 (~125,000) more (F-16).
CLAIM_PAY_UNSEEN_GAS = (40_000, 130_000)


def meter_gas_limit(n_bids: int, evidence_bytes: int) -> int:
    """A gas limit for ``meterDelivery`` of a winner with ``n_bids`` bids and that much evidence.

    Measured (tests/contract/test_gas.py): 99,305 gas for one bid and a 447-byte record,
    about 24,000 more when it is the settlement that returns the rounding dust; each further
    bid adds one bid read and one flag write, each evidence byte 16 (calldata) + 8 (log) +
    copying. The bound (238,000 for that case) leaves over 50 % headroom; unused gas is not charged.
    """
    return 200_000 + 20_000 * max(1, n_bids) + 40 * evidence_bytes


def bid_gas_limit(n_bids: int) -> int:
    """A gas limit for ``submitBids`` of ``n_bids`` that needs no estimate.

    Measured worst case (a bidder's first submission on a fresh metered request, every bid
    on a new price level, registration on): 102,676 gas for 1 bid, 151,377 for 2, 253,052
    for 5, 1,536,163 for 64. This bound leaves at least 40 % headroom; unused gas is not
    charged, it only has to be covered by the balance at the offered fee.
    """
    return 100_000 + 50_000 * max(1, n_bids)


def signed_bid_gas_limit(entries: Sequence[Any]) -> int:
    """A gas limit for ``submitSignedBids`` of ``entries`` (JSON entries, or their bid
    counts) that needs no estimate.

    Measured worst case (a metered request with registration, every household at its first
    relayed bid of 256 requests and its bids on new price levels): 133,994 gas for one entry
    of 1 bid, 88,292 per further 1-bid entry, 930,047 for one 64-bid entry and about 680,000
    per further one. This bound (120,000 per 1-bid entry, 1,380,000 per 64-bid entry, plus
    60,000) leaves over 35 % headroom; unused gas is not charged. 100 one-bid entries need
    12.1M, under the 2^24 cap; ``DemandReduction.submit_signed_bids`` refuses a batch above it.
    """
    total = 60_000
    for entry in entries:
        n = entry if isinstance(entry, int) else len(entry["watts"])
        total += 100_000 + 20_000 * max(1, n)
    return total


def submitted_bid_ids(event: Any) -> range:
    """The bid ids one ``BidsSubmitted`` log announces (one log per submission, not per bid)."""
    first = event["args"]["firstBidId"]
    return range(first, first + event["args"]["count"])


#: Most entries in one ``submitSignedBids`` call (the contract's ``MAX_SIGNED_ENTRIES``).
MAX_SIGNED_ENTRIES = 100
#: Why ``submitSignedBids`` skipped an entry (``SignedBidsSkipped.reason``).
SKIP_REASONS = {
    1: "its signed bids for this request were already placed",
    2: "the bidder is not enrolled",
    3: "the metered request needs a bond the bidder has not posted",
    4: "the bidder has already bid in this metered request",
}


#: Fixed gas limits of the sealed and metered consumer transactions (measured: first commit
#: with a bond 98,053; postBond 73,282; report 34,680; a reveal costs a bid batch plus the
#: hash, the stage and the bond's return, at most about 45,000).
COMMIT_GAS, POST_BOND_GAS, REPORT_GAS, REVEAL_EXTRA_GAS = 150_000, 120_000, 80_000, 80_000
#: Extra gas on claims and delivery settlements: whichever is mined last also returns the
#: rounding dust to the utility (a new storage slot and an event, about 24,000 gas), which
#: an estimate made while others were still pending does not include.
DUST_GAS_MARGIN = 40_000
#: Submissions read per getBids call: through the lens, 4 full submissions (256 bids) cost
#: ~1.5M gas, so each eth_call stays far below a node's gas cap, even a 3M one.
PAGE_SUBMISSIONS = 4
#: Submissions scanned per bidsOf call: through the lens each header is an external call of
#: ~4,000 gas (~4M gas a page), far below a node's eth_call cap.
FILTER_SUBMISSIONS = 1024
#: Bid ids proved per proveLevelPrefix transaction (~2,500 gas each: about 1.3M gas).
PROOF_CHUNK = 500


class Status(IntEnum):
    """Request life cycle; values match the contract's enum."""

    NONE = 0
    OPEN = 1
    SETTLED = 2
    CANCELLED = 3


@dataclass(frozen=True)
class RequestInfo:
    """A request as the contract reports it."""

    request_id: int
    status: Status
    rule: PricingRule
    target_watts: int
    event_start: int
    event_end: int
    bidding_deadline: int
    max_price: int
    tick_wei: int
    budget: int
    submissions: int
    bid_count: int
    clearing_price: int
    accepted_watts: int
    reserved: int
    paid_out: int
    claimed_watts: int
    #: The currency: address(0) for ether, else the ERC-20 token; amounts above are in its base units.
    token: str = ZERO_ADDRESS

    @property
    def duration(self) -> int:
        """Event length in seconds."""
        return self.event_end - self.event_start

    @property
    def in_token(self) -> bool:
        """Whether the request settles in an ERC-20 token rather than ether."""
        return not is_ether(self.token)


@dataclass(frozen=True)
class BidInfo:
    """A bid with its outcome (zero until settlement)."""

    bid_id: int
    bidder: str
    watts: int
    price: int
    cancelled: bool
    claimed: bool
    accepted_watts: int
    payout: int


class Stage(IntEnum):
    """A consumer's stage in a sealed or metered request; values match the contract."""

    NONE = 0
    COMMITTED = 1
    BONDED = 2
    BID = 3
    REPORTED = 4
    SETTLED = 5


@dataclass(frozen=True)
class Terms:
    """Optional request terms: windows in seconds, bond in wei. All zero: an open request.

    ``notice_period`` (metered requests): a winner's shortfall is penalised out of its bond
    only if winners were selected at least this many seconds before the event start; 0 means
    never. None (the default) gives half the time from the close of bidding (or of reveals)
    to the event start, so a selection made promptly after the close keeps the penalty.
    """

    reveal_window: int = 0
    report_window: int = 0
    dispute_window: int = 0
    bond_wei: int = 0
    notice_period: int | None = None

    def notice_for(self, bidding_deadline: int, event_start: int) -> int:
        """The notice period sent to the contract for a request with these times."""
        if not self.metered:
            return 0
        if self.notice_period is not None:
            return self.notice_period
        closes = bidding_deadline + self.reveal_window
        return max(0, event_start - closes) // 2

    @property
    def sealed(self) -> bool:
        return self.reveal_window > 0

    @property
    def metered(self) -> bool:
        return self.report_window > 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        """Windows and bond, as shown in plans and records."""
        return (self.reveal_window, self.report_window, self.dispute_window, self.bond_wei)

    def struct(self, bidding_deadline: int, event_start: int) -> tuple[int, int, int, int, int]:
        """The contract's ``Terms`` struct for a request with these times (the notice resolved)."""
        return (*self.as_tuple(), self.notice_for(bidding_deadline, event_start))


@dataclass(frozen=True)
class TermsInfo:
    """A request's terms as the contract reports them (deadlines 0 where a feature is off)."""

    sealed: bool
    metered: bool
    reveal_deadline: int
    report_deadline: int
    dispute_deadline: int
    bond_wei: int
    unrevealed_bonds: int
    held_bonds: int
    selected_at: int = 0  # metered: when winners were selected (0 before)
    notice_period: int = 0  # metered: least notice before the event start for a penalty


@dataclass(frozen=True)
class ParticipantInfo:
    """A consumer's standing in a sealed or metered request."""

    stage: Stage
    commitment: bytes
    has_bids: bool
    first_bid_id: int
    bid_count: int
    bond: int
    accepted_watts: int
    promised_payout: int
    delivered_watts: int


@lru_cache(maxsize=None)
def _error_selectors() -> dict[bytes, tuple[str, list[str]]]:
    selectors: dict[bytes, tuple[str, list[str]]] = {}
    for item in load_artifact()["abi"]:
        if item["type"] == "error":
            types = [i["type"] for i in item["inputs"]]
            signature = f"{item['name']}({','.join(types)})"
            selectors[function_signature_to_4byte_selector(signature)] = (item["name"], types)
    return selectors


def decode_revert(exc: Exception) -> TransactionFailed | None:
    """Turn a web3 revert exception into ``TransactionFailed`` with the custom error."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data") or data.get("result")
    if data is None and exc.args:
        data = exc.args[-1] if isinstance(exc.args[-1], str) else None
    if not isinstance(data, (str, bytes)):
        return None
    try:
        raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else data
    except ValueError:
        return None  # a node's message, not revert data
    known = _error_selectors().get(raw[:4])
    if known is None:
        return None
    name, types = known
    try:
        args = tuple(abi_decode(types, raw[4:]))
    except Exception:
        args = ()
    rendered = ", ".join(str(a) for a in args)
    return TransactionFailed(f"contract refused: {name}({rendered})", name, args)


@lru_cache(maxsize=None)
def _encoder(name: str) -> tuple[bytes, tuple[str, ...]] | None:
    """Selector and argument types of the contract function ``name``; None if it is
    overloaded or takes a struct (those go through web3)."""
    found = [item for item in load_artifact()["abi"] if item.get("type") == "function" and item["name"] == name]
    if len(found) != 1 or any(arg["type"].startswith("tuple") for arg in found[0]["inputs"]):
        return None
    types = tuple(arg["type"] for arg in found[0]["inputs"])
    return function_signature_to_4byte_selector(f"{name}({','.join(types)})"), types


def _call_data(call: Any) -> str | None:
    """Calldata of a prepared contract call, encoded straight with eth_abi.

    web3's ``build_transaction`` looks the function up again on every call, hashing the
    signature of each of the ABI's ~45 functions: ~6 ms of CPU per bid, which a fleet of
    100 agents paid under one GIL (docs/performance.md). None when eth_abi refuses the
    arguments as given (web3 normalises more forms, e.g. hex strings for bytes32).
    """
    spec = _encoder(call.fn_name)
    if spec is None:
        return None
    selector, types = spec
    try:
        return "0x" + (selector + abi_encode(types, list(call.args))).hex()
    except Exception:
        return None


def _check_gas_cap(name: str, gas: int) -> None:
    """Refuse a transaction that needs more than the per-transaction cap (EIP-7825)."""
    if gas > TX_GAS_CAP:
        raise ChainError(
            f"{name} needs {gas:,} gas, above the {TX_GAS_CAP:,}-gas cap per transaction (EIP-7825); "
            "split the work into smaller calls"
        )


class DemandReduction:
    """Calls and transactions on one deployed DemandReduction."""

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.address = Web3.to_checksum_address(address)
        self.contract: Contract = w3.eth.contract(address=self.address, abi=load_artifact()["abi"])

    # -- deployment and checks ---------------------------------------------------------

    @classmethod
    def deploy(cls, signer: Signer, registration_required: bool = False) -> "DemandReduction":
        """Deploy a new contract from ``signer`` (who becomes the utility)."""
        artifact = load_artifact()
        factory = signer.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        tx = factory.constructor(registration_required).build_transaction({"from": signer.address})
        receipt = signer.send(tx, decode_error=decode_revert)
        return cls(signer.w3, receipt["contractAddress"])

    @classmethod
    def at(cls, w3: Web3, address: str) -> "DemandReduction":
        """Attach to ``address`` after checking it holds this contract's code.

        Raises ``ChainError`` with one line when there is no code or the ABI is wrong.
        """
        if not Web3.is_address(address):
            raise ChainError(f"{address!r} is not an Ethereum address; check CONTRACT_ADDRESS")
        checksum = Web3.to_checksum_address(address)
        if len(w3.eth.get_code(checksum)) == 0:
            raise ChainError(
                f"no contract code at {checksum} on chain {w3.eth.chain_id}; deploy with `dr deploy` "
                "or fix CONTRACT_ADDRESS / --network"
            )
        instance = cls(w3, checksum)
        try:
            ticks = instance.contract.functions.TICKS().call()
            instance.contract.functions.requestCount().call()
            instance.contract.functions.lens().call()
        except Exception as exc:
            raise ChainError(
                f"the contract at {checksum} is not a DemandReduction (ABI mismatch); check CONTRACT_ADDRESS"
            ) from exc
        if ticks != 128:
            raise ChainError(f"the contract at {checksum} uses {ticks} price ticks; this tooling expects 128")
        return instance

    # -- views ---------------------------------------------------------------------------

    @property
    def functions(self) -> Any:
        """The raw web3 contract functions."""
        return self.contract.functions

    @cached_property
    def lens(self) -> Contract:
        """The read-only lens with the paged bid views, which the market created when it
        was deployed (``lens()``)."""
        address = self.functions.lens().call()
        return self.w3.eth.contract(address=address, abi=load_artifact("DemandReductionLens")["abi"])

    def utility(self) -> str:
        """The current utility address."""
        return self.functions.utility().call()

    def request_count(self) -> int:
        """Number of requests created so far."""
        return self.functions.requestCount().call()

    def registration_required(self) -> bool:
        """Whether only enrolled consumers may bid."""
        return self.functions.registrationRequired().call()

    def get_request(self, request_id: int, block: Any = "latest") -> RequestInfo:
        """Request ``request_id``."""
        v = self.functions.getRequest(request_id).call(block_identifier=block)
        return RequestInfo(request_id, Status(v[0]), PricingRule(v[1]), *v[2:])

    def get_bids(self, request_id: int, start: int = 0, count: int = MAX_UINT) -> list[BidInfo]:
        """The bids of submissions ``start`` .. ``start + count - 1`` of ``request_id``."""
        return [BidInfo(*b) for b in self.lens.functions.getBids(request_id, start, count).call()]

    def all_bids(self, request_id: int, block: Any = "latest") -> list[BidInfo]:
        """Every bid of ``request_id``, read in pages so that no single call grows with the book."""
        total = self.get_request(request_id, block).submissions
        bids: list[BidInfo] = []
        for start in range(0, total, PAGE_SUBMISSIONS):
            page = self.lens.functions.getBids(request_id, start, PAGE_SUBMISSIONS).call(block_identifier=block)
            bids.extend(BidInfo(*b) for b in page)
        return bids

    def bids_of(self, request_id: int, consumer: str, start: int = 0, count: int = MAX_UINT) -> list[BidInfo]:
        """The bids ``consumer`` placed in submissions ``start`` .. ``start + count - 1``.

        Scanned ``FILTER_SUBMISSIONS`` submissions per call, so no single ``eth_call``
        grows with the book (a node caps a call's gas).
        """
        consumer = Web3.to_checksum_address(consumer)
        end = min(self.get_request(request_id).submissions, start + count if count < MAX_UINT - start else MAX_UINT)
        rows: list[BidInfo] = []
        for page in range(start, end, FILTER_SUBMISSIONS):
            size = min(FILTER_SUBMISSIONS, end - page)
            rows.extend(BidInfo(*b) for b in self.lens.functions.bidsOf(request_id, consumer, page, size).call())
        return rows

    def bid_ids_logged(self, request_id: int, consumer: str, from_block: int = 0) -> list[int]:
        """Ids of the live bids ``consumer`` placed in ``request_id``, from the contract's events.

        One topic-filtered ``eth_getLogs``: constant work for the caller, where ``bids_of``
        scans every submission of the request.
        """
        consumer = Web3.to_checksum_address(consumer)
        filters = {"requestId": request_id, "bidder": consumer}
        placed = self.contract.events.BidsSubmitted().get_logs(argument_filters=filters, from_block=from_block)
        gone = self.contract.events.BidCancelled().get_logs(argument_filters=filters, from_block=from_block)
        cancelled = {e["args"]["bidId"] for e in gone}
        return [i for e in placed for i in submitted_bid_ids(e) if i not in cancelled]

    def bid_ids_logged_by_bidder(self, request_id: int, from_block: int = 0) -> dict[str, list[int]]:
        """``bid_ids_logged`` for every bidder at once: ``{checksum address: live bid ids}``
        (a fleet reads this once per request instead of once per agent)."""
        filters = {"requestId": request_id}
        placed = self.contract.events.BidsSubmitted().get_logs(argument_filters=filters, from_block=from_block)
        gone = self.contract.events.BidCancelled().get_logs(argument_filters=filters, from_block=from_block)
        cancelled = {e["args"]["bidId"] for e in gone}
        out: dict[str, list[int]] = {}
        for e in placed:
            live = [i for i in submitted_bid_ids(e) if i not in cancelled]
            if live:
                out.setdefault(Web3.to_checksum_address(e["args"]["bidder"]), []).extend(live)
        return out

    def outcome_of(self, request_id: int, consumer: str) -> tuple[int, int]:
        """(accepted watts, payout wei) of ``consumer`` in ``request_id``."""
        return tuple(self.lens.functions.outcomeOf(request_id, Web3.to_checksum_address(consumer)).call())

    def owed(self, account: str, token: str | None = None) -> int:
        """What ``account`` may withdraw: wei, or base units of ``token`` (an ERC-20 address)."""
        account = Web3.to_checksum_address(account)
        if is_ether(token):
            return self.functions.owed(account).call()
        return self.functions.owedToken(Web3.to_checksum_address(token), account).call()

    def book(self, request_id: int) -> list[int]:
        """Live watts at each of the 128 price levels."""
        return list(self.functions.book(request_id).call())

    def terms_of(self, request_id: int, block: Any = "latest") -> TermsInfo:
        """Sealed / metered terms of a request, with its deadlines and bonds."""
        return TermsInfo(*self.functions.termsOf(request_id).call(block_identifier=block))

    def participant_of(self, request_id: int, consumer: str) -> ParticipantInfo:
        """Where ``consumer`` stands in a sealed or metered request."""
        v = self.functions.participantOf(request_id, Web3.to_checksum_address(consumer)).call()
        return ParticipantInfo(Stage(v[0]), bytes(v[1]), *v[2:])

    def commitment_of(self, request_id: int, bidder: str, watts: Sequence[int], prices: Sequence[int],
                      salt: bytes) -> bytes:
        """The contract's own hash of sealed bids (``market.commitment`` computes it offline)."""
        return bytes(self.functions.commitmentOf(
            request_id, Web3.to_checksum_address(bidder), list(watts), list(prices), salt).call())

    # -- transactions ----------------------------------------------------------------------

    def _send(self, signer: Signer, call: Any, value: int = 0, gas: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"from": signer.address, "value": value}
        if gas is not None:
            _check_gas_cap(call.fn_name, gas)
            # Nothing left for web3 to look up (it would fetch the fees the signer fetches too).
            params["gas"] = gas
            params.update(signer.fees().fields)
            data = _call_data(call)
            if data is not None:
                return signer.send(dict(params, to=self.address, data=data), decode_error=decode_revert)
        try:
            tx = call.build_transaction(params)
        except Exception as exc:
            decoded = decode_revert(exc)
            if decoded is not None:
                raise decoded from exc
            message = str(exc.args[0] if exc.args else exc)
            if isinstance(exc.args[0] if exc.args else None, dict):
                message = exc.args[0].get("message", message)
            if "funds" in message.lower():
                raise ChainError(
                    f"insufficient funds: account {signer.label} ({signer.address}) has "
                    f"{Web3.from_wei(signer.balance(), 'ether')} ETH, not enough for this transaction "
                    f"(value {Web3.from_wei(value, 'ether')} ETH plus gas); fund the account and retry"
                ) from exc
            raise ChainError(f"the node refused a transaction from {signer.label}: {message}") from exc
        if gas is None:
            # web3 filled in the bare estimate, so Signer's margin never applied. Without one, a
            # claim estimated before another consumer's claim was mined ran out of gas when it
            # became the last claim (that one also pays the dust out): same margin as Signer's.
            _check_gas_cap(call.fn_name, tx["gas"])
            tx["gas"] = min(int(tx["gas"] * 1.2) + 10_000, TX_GAS_CAP)
        return signer.send(tx, decode_error=decode_revert)

    def request_reduction(
        self,
        signer: Signer,
        target_watts: int,
        event_start: int,
        event_end: int,
        bidding_deadline: int,
        max_price: int,
        rule: PricingRule = PricingRule.UNIFORM,
        budget: int | None = None,
        terms: Terms | None = None,
        token: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Post a request; returns (request id, receipt). ``budget`` defaults to the minimum;
        with ``terms`` it goes through ``requestReductionWithTerms``. With ``token`` (an ERC-20
        address) the budget, prices and payouts are in the token's base units: the market is
        approved for the budget first (if it is not already) and ``requestReductionInToken``
        escrows it; bonds are in ether only, so ``terms.bond_wei`` must be 0 there."""
        from .market import required_budget

        if budget is None:
            budget = required_budget(target_watts, event_end - event_start, max_price)
        args = (target_watts, event_start, event_end, bidding_deadline, max_price, int(rule))
        value = budget
        if not is_ether(token):
            Erc20(self.w3, token).ensure_allowance(signer, self.address, budget)
            struct = (terms or Terms()).struct(bidding_deadline, event_start)
            call = self.functions.requestReductionInToken(Web3.to_checksum_address(token), budget, *args, struct)
            value = 0
        elif terms is None:
            call = self.functions.requestReduction(*args)
        else:
            call = self.functions.requestReductionWithTerms(*args, terms.struct(bidding_deadline, event_start))
        receipt = self._send(signer, call, value=value)
        events = self.events_in(receipt, "ReductionRequested")
        return events[0]["args"]["requestId"], receipt

    def sponsor_book(self, signer: Signer, request_id: int, slot_mask: int = ALL_BOOK_SLOTS) -> dict[str, Any]:
        """Pay ahead for the first bid at each book slot of ``slot_mask`` (bit s: price levels
        5s+1..5s+5; default all 26), so no bidder writes a book slot from zero (``sponsorBook``:
        about 22,100 gas a still-empty slot, docs/gas.md). Open request, before its deadline."""
        return self._send(signer, self.functions.sponsorBook(request_id, int(slot_mask)))

    def request_reduction_with_terms(
        self,
        signer: Signer,
        target_watts: int,
        event_start: int,
        event_end: int,
        bidding_deadline: int,
        max_price: int,
        terms: Terms,
        rule: PricingRule = PricingRule.UNIFORM,
        budget: int | None = None,
        token: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Post a sealed and/or metered request (in ``token``, an ERC-20, if given; bonds are
        in ether only); returns (request id, receipt)."""
        return self.request_reduction(signer, target_watts, event_start, event_end, bidding_deadline, max_price,
                                      rule, budget, terms=terms, token=token)

    def commit_bids(self, signer: Signer, request_id: int, commitment: bytes, bond: int = 0) -> dict[str, Any]:
        """Commit to sealed bids (the first commitment carries the bond)."""
        call = self.functions.commitBids(request_id, commitment)
        return self._counted(signer, request_id, 1, lambda: self._send_fixed(signer, call, COMMIT_GAS, value=bond))

    def reveal_bids(self, signer: Signer, request_id: int, watts: Sequence[int], prices: Sequence[int],
                    salt: bytes) -> dict[str, Any]:
        """Reveal committed bids during the reveal window."""
        call = self.functions.revealBids(request_id, list(watts), list(prices), salt)
        return self._send_fixed(signer, call, bid_gas_limit(len(watts)) + REVEAL_EXTRA_GAS)

    def post_bond(self, signer: Signer, request_id: int, bond: int) -> dict[str, Any]:
        """Post the bond of an open metered request before bidding."""
        return self._send_fixed(signer, self.functions.postBond(request_id), POST_BOND_GAS, value=bond)

    def report_delivery(self, signer: Signer, request_id: int, delivered_watts: int) -> dict[str, Any]:
        """Report the reduction delivered over the event window, average W."""
        return self._send_fixed(signer, self.functions.reportDelivery(request_id, delivered_watts), REPORT_GAS)

    def meter_delivery(self, signer: Signer, request_id: int, consumer: str, metered_watts: int,
                       evidence: bytes = b"") -> dict[str, Any]:
        """Settle a winner on the utility's own measurement, with or without its report
        (``meterDelivery``), publishing ``evidence`` (the measurement record, ``mv.fingerprint``).

        Sent with a fixed limit (``meter_gas_limit``), not an estimate: the payout is pushed
        with a capped call, and an estimate against a recipient that burns gas runs away."""
        bids = self.participant_of(request_id, consumer).bid_count
        call = self.functions.meterDelivery(request_id, Web3.to_checksum_address(consumer), metered_watts,
                                            bytes(evidence))
        return self._send_fixed(signer, call, meter_gas_limit(bids, len(evidence)))

    def confirm_delivery(self, signer: Signer, request_id: int, consumer: str,
                         evidence: bytes = b"") -> dict[str, Any]:
        """Accept a consumer's report as it stands and settle it (utility): ``meterDelivery``
        at the reported figure. Refuses, with one line, a participant that has not reported."""
        p = self.participant_of(request_id, consumer)
        if p.stage == Stage.BID:  # other stages: the contract's own refusal names the stage
            raise UserError(f"{consumer} has not reported a delivery on request {request_id} to confirm; "
                            "meter it with a figure instead")
        return self.meter_delivery(signer, request_id, consumer, p.delivered_watts, evidence)

    def dispute_delivery(self, signer: Signer, request_id: int, consumer: str, metered_watts: int,
                         evidence: bytes = b"") -> dict[str, Any]:
        """Replace a consumer's report by the utility's lower measurement and settle it. A
        figure at or above the report would confirm it instead: refused with one line."""
        p = self.participant_of(request_id, consumer)
        if p.stage == Stage.REPORTED and metered_watts >= p.delivered_watts:
            raise UserError(f"a dispute must be below the consumer's report of {p.delivered_watts / 1000:.3f} kW "
                            f"(you entered {metered_watts / 1000:.3f} kW); confirm the report instead")
        return self.meter_delivery(signer, request_id, consumer, metered_watts, evidence)

    def deliveries_metered(self, request_id: int, consumer: str | None = None,
                           from_block: int = 0) -> list[dict[str, Any]]:
        """Every ``DeliveryMetered`` of ``request_id`` (of ``consumer``, if given), oldest first:
        ``{"consumer", "metered_watts", "evidence" (bytes), "tx"}``."""
        filters: dict[str, Any] = {"requestId": request_id}
        if consumer is not None:
            filters["consumer"] = Web3.to_checksum_address(consumer)
        logs = self.contract.events.DeliveryMetered().get_logs(argument_filters=filters, from_block=from_block)
        return [{"consumer": str(e["args"]["consumer"]), "metered_watts": int(e["args"]["meteredWatts"]),
                 "evidence": bytes(e["args"]["evidence"]), "tx": Web3.to_hex(e["transactionHash"])} for e in logs]

    def settle_delivery(self, signer: Signer, request_id: int, consumer: str) -> dict[str, Any]:
        """Settle a participant after its windows (anyone), or return its bond from a cancelled request."""
        call = self.functions.settleDelivery(request_id, Web3.to_checksum_address(consumer))
        return self._send(signer, call, gas=self._with_margin(signer, call))

    def submit_bids(
        self, signer: Signer, request_id: int, watts: Sequence[int], prices: Sequence[int],
        gas: int | None = None,
    ) -> dict[str, Any]:
        """Place bids; returns the receipt.

        With ``gas`` (the consumer daemon passes ``bid_gas_limit(len(watts))``) the transaction
        is sent at once, without ``eth_estimateGas``: ganache 7.9.2 takes ~0.5 s per estimate,
        one at a time, and never answers an estimate during which a block is mined (see
        docs/performance.md, "Latency: causes and fixes"). A bid that then reverts on chain
        is replayed with ``eth_call`` so that the error still carries the contract's reason.
        """
        call = self.functions.submitBids(request_id, list(watts), list(prices))
        return self._counted(signer, request_id, len(watts),
                             lambda: self._send(signer, call, gas=gas) if gas is None else
                             self._send_fixed(signer, call, gas))

    def submit_signed_bids(self, signer: Signer, request_id: int, entries: Sequence[Any],
                           gas: int | None = None) -> dict[str, Any]:
        """Place households' signed bids (``relay.sign_bids`` entries) in one transaction that
        ``signer`` pays for (``submitSignedBids``); returns the receipt.

        Sent with ``signed_bid_gas_limit(entries)`` unless ``gas`` is given, refused above the
        per-transaction cap (EIP-7825: split the batch). Entries a third party voided after
        they were checked are skipped by the contract (``skipped_signed_bids``); a bad
        signature or bad bids revert the batch, so check entries first (``relay.check_entry`` with
        the request's cap)."""
        from .relay import entry_tuple

        if len(entries) > MAX_SIGNED_ENTRIES:
            raise UserError(f"{len(entries)} signed entries in one batch, above the contract's "
                            f"{MAX_SIGNED_ENTRIES}; split the batch")
        limit = gas if gas is not None else signed_bid_gas_limit(entries)
        _check_gas_cap("submitSignedBids", limit)
        call = self.functions.submitSignedBids(request_id, [entry_tuple(e) for e in entries])
        return self._send_fixed(signer, call, limit)

    def events_in(self, receipt: Any, name: str) -> list[Any]:
        """The ``name`` events this market emitted in ``receipt``. web3's ``process_receipt``
        decodes every log whose topics match, whichever contract emitted it: a paid recipient
        or a token's hook can emit lookalikes in the same transaction (F-17)."""
        mine = self.address.lower()
        own = dict(receipt, logs=[log for log in receipt["logs"] if str(log["address"]).lower() == mine])
        return list(getattr(self.contract.events, name)().process_receipt(own, errors=DISCARD))

    def skipped_signed_bids(self, receipt: Any) -> list[tuple[str, int]]:
        """``(bidder, reason)`` of every entry ``submitSignedBids`` skipped in ``receipt``;
        reasons are ``SKIP_REASONS`` keys."""
        events = self.events_in(receipt, "SignedBidsSkipped")
        return [(str(e["args"]["bidder"]), int(e["args"]["reason"])) for e in events]

    def signed_bids_used(self, bidder: str, request_id: int) -> bool:
        """Whether ``bidder``'s signed bids for ``request_id`` were placed already."""
        return bool(self.functions.signedBidsUsed(Web3.to_checksum_address(bidder), request_id).call())

    def domain_separator(self) -> bytes:
        """The market's EIP-712 domain separator (signed bids)."""
        return bytes(self.functions.DOMAIN_SEPARATOR().call())

    @staticmethod
    def _counted(signer: Signer, request_id: int, bids: int, send: Any) -> dict[str, Any]:
        """``send()`` a bid transaction carrying ``bids`` bids (a sealed commitment counts as
        one), counted as sent, then as mined with the reaction time (``metrics``) unless it
        reverted."""
        metrics.bids_sent(bids)
        receipt = send()
        metrics.bids_mined(bids, request_id, signer.address)
        return receipt

    def _send_fixed(self, signer: Signer, call: Any, gas: int, value: int = 0) -> dict[str, Any]:
        """Send with a fixed gas limit and no estimate; a revert on chain is replayed with
        ``eth_call`` so that the error still names the contract's reason. For the daemons'
        time-critical transactions (bids, commitments, reveals, reports): ganache 7.9.2 never
        answers an estimate during which a block is mined."""
        try:
            return self._send(signer, call, value=value, gas=gas)
        except TransactionFailed as exc:
            if exc.error is not None:
                raise
            try:
                call.call({"from": signer.address, "value": value})
            except (ContractLogicError, ContractCustomError, Web3RPCError, ValueError) as replay:
                decoded = decode_revert(replay)
                if decoded is not None:
                    raise decoded from exc
            raise

    def cancel_bids(self, signer: Signer, request_id: int, bid_ids: Iterable[int]) -> dict[str, Any]:
        """Withdraw bids before the deadline."""
        return self._send(signer, self.functions.cancelBids(request_id, list(bid_ids)))

    def cancel_request(self, signer: Signer, request_id: int) -> dict[str, Any]:
        """Cancel an open request before its deadline (utility only)."""
        return self._send(signer, self.functions.cancelRequest(request_id))

    def select_winners(self, signer: Signer, request_id: int) -> dict[str, Any]:
        """Settle ``request_id``, proving the marginal queue when the contract needs it.

        A long queue is proved with ``proveLevelPrefix`` in chunks of ``PROOF_CHUNK`` bids,
        so settlement never needs more than about 1.3M gas in one transaction.
        """
        try:
            return self._send(signer, self.functions.selectWinners(request_id))
        except TransactionFailed as exc:
            if exc.error != "MarginalHintRequired":
                raise
            tick = int(exc.error_args[0])
        hint = self.marginal_hint(request_id)
        prefix, last = hint[:-1], hint[-1:]
        next_id = self.functions.levelProof(request_id, tick).call()[2] if prefix else 0
        prefix = [b for b in prefix if b >= next_id]  # resume after any chunks already proved
        if len(prefix) > PROOF_CHUNK:
            for start in range(0, len(prefix), PROOF_CHUNK):
                chunk = prefix[start:start + PROOF_CHUNK]
                self._send(signer, self.functions.proveLevelPrefix(request_id, tick, chunk))
            prefix = []
        return self._send(signer, self.functions.selectWinnersWithHint(request_id, prefix + last))

    def marginal_hint(self, request_id: int) -> list[int]:
        """Bid ids at the clearing level up to the marginal bid, as ``selectWinnersWithHint`` needs."""
        from .market import Bid, clear

        info = self.get_request(request_id)
        bids = self.all_bids(request_id)
        result = clear(
            [Bid(b.bidder, b.watts, b.price, b.cancelled) for b in bids],
            info.target_watts, info.duration, info.max_price, info.budget, info.rule,
        )
        marginal = max(
            (i for i, o in enumerate(result.outcomes) if o.accepted_watts and bids[i].price == result.clearing_price),
        )
        return [b.bid_id for b in bids[: marginal + 1] if b.price == result.clearing_price]

    def _with_margin(self, signer: Signer, call: Any, margin: int = DUST_GAS_MARGIN) -> int | None:
        """An estimate plus ``margin``, or None to let ``_send`` report why it would revert."""
        try:
            return int(call.estimate_gas({"from": signer.address})) + margin
        except Exception:
            return None

    def claim(self, signer: Signer, request_id: int, bid_ids: Iterable[int]) -> dict[str, Any]:
        """Credit the payouts of ``bid_ids`` to their bidders.

        The gas estimate gets ``DUST_GAS_MARGIN`` on top: when other winners' claims are mined
        first, this one may become the last and also return the rounding dust to the
        utility, which the estimate (made before) did not include.
        """
        call = self.functions.claim(request_id, list(bid_ids))
        return self._send(signer, call, gas=self._with_margin(signer, call))

    def payments_sent_to(self, request_id: int, bidder: str, from_block: int = 0) -> list[tuple[str, int]]:
        """``(tx hash, wei)`` of every payout ``claimAndPay`` sent ``bidder`` in ``request_id``
        (its ``PayoutSent`` events, one per bid; one topic-filtered ``eth_getLogs``)."""
        filters = {"requestId": request_id, "bidder": Web3.to_checksum_address(bidder)}
        logs = self.contract.events.PayoutSent().get_logs(argument_filters=filters, from_block=from_block)
        return [(Web3.to_hex(e["transactionHash"]), int(e["args"]["amount"])) for e in logs]

    def unpaid_winning_bids(self, request_id: int) -> list[int]:
        """Ids of the settled request's winning bids nobody has claimed yet."""
        return [b.bid_id for b in self.all_bids(request_id) if b.payout and not b.claimed]

    def claim_and_pay(
        self, signer: Signer, request_id: int, bid_ids: Iterable[int] | None = None
    ) -> list[dict[str, Any]]:
        """Claim winning bids and send each payout straight to its bidder (``claimAndPay``).

        ``bid_ids`` defaults to every winning bid not claimed yet. Sent in chunks of
        ``CLAIM_PAY_CHUNK`` bids (``CLAIM_PAY_TOKEN_CHUNK`` in a token), so each transaction
        stays under ``TX_GAS_CAP``; bids that
        were claimed meanwhile are skipped by the contract. A payment the recipient refuses
        is credited to its pull balance (a ``PaymentDeferred`` event). Returns the receipts.
        """
        ids = self.unpaid_winning_bids(request_id) if bid_ids is None else list(bid_ids)
        in_token = self.get_request(request_id).in_token
        chunk = CLAIM_PAY_TOKEN_CHUNK if in_token else CLAIM_PAY_CHUNK
        receipts = []
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            call = self.functions.claimAndPay(request_id, part)
            gas = self._with_margin(signer, call)
            if gas is not None:
                # The estimate trusts each recipient to behave as it did when estimated; one
                # that burns its capped gas only when mined must not void the chunk (F-16).
                # The chunk sizes keep even every bid's worst case under the cap.
                gas = min(gas + len(part) * CLAIM_PAY_UNSEEN_GAS[in_token], TX_GAS_CAP)
            receipts.append(self._send(signer, call, gas=gas))
        return receipts

    def withdraw(self, signer: Signer, token: str | None = None, to: str | None = None) -> dict[str, Any]:
        """Pay ``signer`` what it is owed in ether, or in ``token`` (an ERC-20 address), to
        itself or to ``to`` (e.g. when the token refuses ``signer``)."""
        if is_ether(token) and to is None:
            return self._send(signer, self.functions.withdraw())
        to = Web3.to_checksum_address(to or signer.address)
        return self._send(signer, self.functions.withdrawToken(Web3.to_checksum_address(token or ZERO_ADDRESS), to))

    def currency_of(self, request_id: int) -> "Currency":
        """The currency of ``request_id``: ETH, or its token's symbol and decimals."""
        from .token import currency_of

        return currency_of(self.w3, self.get_request(request_id).token)

    def enrol(self, signer: Signer, consumer: str) -> dict[str, Any]:
        """Enrol ``consumer`` (utility, registered mode)."""
        return self._send(signer, self.functions.enrol(Web3.to_checksum_address(consumer)))

    def request_enrolment(self, signer: Signer) -> dict[str, Any]:
        """Ask to be enrolled (consumer, registered mode)."""
        return self._send(signer, self.functions.requestEnrolment())
