"""``Signer``: sends transactions from one account.

Signed locally with a private key, or by the node for its own unlocked accounts (local dev
chains only). It keeps its own nonce under a lock, so one daemon can send from several
threads; it takes its fees from ``fees``; it waits for receipts with a timeout, replaces a
transaction that is stuck below the market, fills nonce gaps left by a reorganisation,
and sends through an ``RpcBatcher`` when a fleet shares one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3._utils.method_formatters import receipt_formatter
from web3.datastructures import AttributeDict
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    TransactionNotFound,
    Web3RPCError,
)

from .. import metrics
from ..errors import (
    ChainError,
    InsufficientFunds,
    ReceiptTimeout,
    TransactionDropped,
    TransactionFailed,
    TransactionRejected,
    WaitInterrupted,
    is_connection_error,
)
from .batcher import RpcBatcher
from .fees import Fees, fetch_fees, forget_fees, shared_fees

log = logging.getLogger("demand_response.chain")

DEFAULT_RECEIPT_TIMEOUT = 120.0
#: How long a head block number read while waiting for receipts is shared (s).
HEAD_TTL = 0.05
_HEAD_LOCK = threading.Lock()
#: Retries of a receipt poll that met a reset connection (batched polls; web3 retries its own).
RECEIPT_RETRIES = 4
#: Most lost nonces a signer fills with 0-value transfers (see ``Signer._fill_gap``).
MAX_GAP = 8


class _NonceError(ChainError):
    """The node refused the transaction's nonce."""


def _maybe_delivered(exc: BaseException) -> bool:
    """True when a request failed after it may have reached the node (a read timeout, a
    connection reset mid-request); False when it surely did not (no connection made)."""
    import requests
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.Timeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        return not isinstance(reason, NewConnectionError)
    return False


def _rpc_tx(tx: dict[str, Any]) -> dict[str, Any]:
    """A transaction dict as JSON-RPC wants it: quantities in hex, bytes as 0x-hex."""
    out: dict[str, Any] = {}
    for key, value in tx.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            out[key] = hex(value)
        elif isinstance(value, (bytes, bytearray)):
            out[key] = "0x" + bytes(value).hex()
        else:
            out[key] = value
    return out


class Signer:
    """Sends transactions from one account, with its own nonce and fee policy."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount | str,
        *,
        receipt_timeout: float = DEFAULT_RECEIPT_TIMEOUT,
        stuck_after: float = 30.0,
        label: str | None = None,
    ) -> None:
        self.w3 = w3
        self._local = account if isinstance(account, LocalAccount) else None
        self.address: str = Web3.to_checksum_address(account.address if self._local else account)
        self.label = label or self.address
        self.receipt_timeout = receipt_timeout
        self.stuck_after = stuck_after
        self._lock = threading.Lock()
        self._nonce: int | None = None
        self._chain_id: int | None = None
        #: Seconds for which fees fetched by one signer serve all signers on the connection.
        self.fee_ttl = 0.0
        #: Shared by a fleet's signers: sends and receipt polls go out in JSON-RPC batches.
        self.batcher: RpcBatcher | None = None
        #: Set by a daemon when it stops: a receipt wait then gives up at once (``WaitInterrupted``).
        self.cancel: threading.Event | None = None
        #: (nonce, hash) of a locally signed send that got no answer and was not mined yet.
        self._unconfirmed: tuple[int, bytes] | None = None

    @classmethod
    def from_key(cls, w3: Web3, private_key: str, **kwargs: Any) -> "Signer":
        """A signer for a raw private key (hex)."""
        return cls(w3, Account.from_key(private_key), **kwargs)

    # -- fees and nonces -------------------------------------------------------------

    def fees(self) -> Fees:
        """EIP-1559 fees when the latest block has a base fee, else a legacy gas price.

        With ``fee_ttl`` > 0 (the consumer daemon sets ``FEES_TTL``) the answer is shared by
        every such signer on this connection for that long (``fees.shared_fees``). By
        default every call asks the node.
        """
        return fetch_fees(self.w3) if self.fee_ttl <= 0 else shared_fees(self.w3, self.fee_ttl)

    def _next_nonce(self) -> int:
        # The account belongs to this signer: read the chain's nonce once, then count.
        # Any failed send resets it, so a restarted node or reorg is picked up.
        if self._nonce is None:
            self._nonce = self.w3.eth.get_transaction_count(self.address, "pending")
        nonce = self._nonce
        self._nonce += 1
        return nonce

    @property
    def chain_id(self) -> int:
        """The connected chain's id (read once)."""
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def prime(self) -> None:
        """Read the chain id and the account's nonce now, so that the first send need not.

        A nonce that goes stale meanwhile is refused by the node and re-read (``send``)."""
        _ = self.chain_id
        with self._lock:
            if self._nonce is None:
                self._nonce = self.w3.eth.get_transaction_count(self.address, "pending")

    def resync(self) -> None:
        """Forget the cached nonce (after a node restart or an external transaction)."""
        with self._lock:
            self._nonce = None
        forget_fees(self.w3)

    def balance(self) -> int:
        """The account's balance in wei."""
        return int(self.w3.eth.get_balance(self.address))

    # -- sending ---------------------------------------------------------------------

    def send(
        self,
        tx: dict[str, Any],
        *,
        decode_error: Callable[[Exception], TransactionFailed | None] | None = None,
        wait: bool = True,
    ) -> dict[str, Any]:
        """Fill in, sign, send and (by default) wait for ``tx``; return its receipt.

        Raises ``TransactionFailed`` on a revert (with the custom error decoded when
        ``decode_error`` knows it) and ``ChainError`` for funds, timeouts and the like.
        """
        tx = dict(tx)
        tx["from"] = self.address
        tx.setdefault("chainId", self.chain_id)
        if "gas" not in tx:
            try:
                tx["gas"] = int(self.w3.eth.estimate_gas(tx) * 1.2) + 10_000
            except (ContractLogicError, ContractCustomError, ValueError) as exc:
                raise self._failure(exc, decode_error) from exc
        with self._lock:
            if self._unconfirmed is not None:
                self._check_unconfirmed()
            fees = self.fees()
            tx.update(fees.fields)
            for attempt in (1, 2):
                tx["nonce"] = self._next_nonce()
                try:
                    tx_hash = self._submit(tx)
                    break
                except _NonceError:
                    # Someone else used the account, or the node restarted: resync once.
                    self._nonce = None
                    if attempt == 2:
                        raise ChainError(f"the node keeps refusing the nonce of {self.label}; "
                                         "is another program sending from this account?") from None
                except Exception:
                    self._nonce = None  # re-read from the chain next time
                    raise
        if not wait:
            return {"transactionHash": tx_hash}
        receipt = self._wait(tx, tx_hash, fees)
        metrics.transaction_mined(tx, receipt)  # gas and fees by contract function (reverts spend gas too)
        self._unconfirmed = None
        if receipt["status"] != 1:
            raise self._failure(None, decode_error, receipt)
        return dict(receipt)

    def _submit(self, tx: dict[str, Any]) -> bytes:
        try:
            if self._local is not None:
                signed = self._local.sign_transaction(tx)
                try:
                    if self.batcher is not None:
                        return HexBytes(self.batcher.call("eth_sendRawTransaction",
                                                          ["0x" + bytes(signed.raw_transaction).hex()]))
                    return self.w3.eth.send_raw_transaction(signed.raw_transaction)
                except Exception as exc:
                    if not _maybe_delivered(exc):
                        raise
                    # The node may have it: wait for this very transaction (its hash is known)
                    # rather than fail and let the caller send the same bid again with a new
                    # nonce. If it never arrived, the wait re-sends it with higher fees.
                    log.warning("%s: no answer to the send of %s (%s); waiting for it in case the node has it",
                                self.label, HexBytes(signed.hash).hex(), type(exc).__name__)
                    self._unconfirmed = (int(tx["nonce"]), HexBytes(signed.hash))
                    return HexBytes(signed.hash)
            if self.batcher is not None:
                return HexBytes(self.batcher.call("eth_sendTransaction", [_rpc_tx(tx)]))
            return self.w3.eth.send_transaction(tx)
        except (ValueError, Web3RPCError) as exc:
            message = str(exc)
            if "nonce" in message.lower():
                raise _NonceError(message) from exc
            price = tx.get("maxFeePerGas", tx.get("gasPrice", 0))
            if "funds" in message.lower() or self.balance() < tx["gas"] * price + int(tx.get("value", 0)):
                raise InsufficientFunds(self._funds_message(tx)) from exc
            raise TransactionRejected(f"the node rejected a transaction from {self.label}: {message}") from exc

    def _check_unconfirmed(self) -> None:
        """The last send got no answer and its wait failed too (the node was down): if the
        node never got that transaction, its nonce is free again; use it rather than leave
        a gap that ``_fill_gap`` would have to fill later. Called under ``_lock``."""
        nonce, tx_hash = self._unconfirmed  # type: ignore[misc]
        try:
            known = self.w3.provider.make_request("eth_getTransactionByHash", ["0x" + bytes(tx_hash).hex()])
            following = int(self.w3.provider.make_request(
                "eth_getTransactionCount", [self.address, "pending"])["result"], 16)
        except Exception:
            return  # ask again before the next send
        if known.get("result") is None and following <= nonce:
            self._nonce = following
        self._unconfirmed = None

    def _funds_message(self, tx: dict[str, Any]) -> str:
        balance = self.balance()
        price = tx.get("maxFeePerGas", tx.get("gasPrice", 0))
        need = tx["gas"] * price + int(tx.get("value", 0))
        return (
            f"insufficient funds: account {self.label} ({self.address}) has "
            f"{Web3.from_wei(balance, 'ether')} ETH, the transaction needs up to "
            f"{Web3.from_wei(need, 'ether')} ETH; fund the account and retry"
        )

    def _wait(self, tx: dict[str, Any], tx_hash: bytes, fees: Fees) -> Any:
        """Poll for a receipt of any version of ``tx``; while it is stuck, replace it.

        The first poll is immediate (an automining chain has the receipt already). After
        that the receipt is asked for only when the head has moved (or once a second): the
        head is one ``eth_blockNumber`` shared by all signers on the connection (``_head``),
        checked every 0.1 s backing off to 0.5 s. So a fleet's agents waiting for the next
        block do not crowd out the ones still sending, and a public node is not hammered.
        After ``stuck_after`` seconds without a receipt, a locally signed transaction is
        re-sent with the same nonce and higher fees; the first version to be mined wins. A
        node-signed one (dev chains) cannot be re-signed: if the node no longer knows it (a
        reorganisation dropped its block, or the pool evicted it) the wait ends with
        ``TransactionDropped`` instead of running into the receipt timeout. ``cancel`` ends
        the wait with ``WaitInterrupted``, so a daemon stops at once on SIGINT.
        """
        start = time.monotonic()
        deadline = start + self.receipt_timeout
        replace_at = start + self.stuck_after
        hashes = [tx_hash]
        gap_seen = False
        delay = 0.1
        head, polled_head, polled_at = self._head(), None, 0.0
        while True:
            if head is None or head != polled_head or time.monotonic() - polled_at >= 1.0:
                polled_head, polled_at = head, time.monotonic()
                for candidate in reversed(hashes):
                    receipt = self._receipt(candidate)
                    if receipt is not None:
                        return receipt
            now = time.monotonic()
            if self.cancel is not None and self.cancel.is_set():
                raise WaitInterrupted(f"stopped while waiting for the receipt of {tx_hash.hex()} from {self.label}")
            if now >= deadline:
                raise ReceiptTimeout(
                    f"no receipt for {tx_hash.hex()} from {self.label} after "
                    f"{self.receipt_timeout:.0f} s; the node may be down or fees too low"
                )
            if now >= replace_at:
                gap_seen = self._fill_gap(tx, confirmed=gap_seen)
                problem = self._lost(tx, hashes)
                if problem is not None:
                    with self._lock:
                        self._nonce = None  # read again from the chain for the next send
                    raise TransactionDropped(f"transaction {tx_hash.hex()} from {self.label} {problem}")
                if self._local is None:
                    replace_at = now + self.stuck_after
            if self._local is not None and now >= replace_at:
                fees = fees.bumped()
                metrics.rpc_retry("replacement")
                log.warning("%s: transaction %s not mined after %.0f s; replacing it with higher fees",
                            self.label, hashes[-1].hex(), now - start)
                try:
                    hashes.append(self._submit(dict(tx, **fees.fields)))
                except ChainError as exc:  # e.g. the original was mined meanwhile
                    log.warning("%s: replacement not accepted (%s)", self.label, exc)
                replace_at = now + self.stuck_after
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
            head = self._head()

    def _lost(self, tx: dict[str, Any], hashes: list[bytes]) -> str | None:
        """Why ``tx`` (sent as ``hashes``) can never be mined, or None (asked once no receipt came).

        * Its nonce was used by another transaction, which was mined instead.
        * A node-signed transaction the node no longer knows at all (locally signed ones
          are re-sent with higher fees instead).
        Unreachable nodes and unclear answers say None: the wait goes on.
        """
        nonce = int(tx["nonce"])
        try:
            mined = self._mined_nonce()  # before the receipts: ours may be mined in between
            if any(self._receipt(h) is not None for h in hashes):
                return None  # mined after all, just now
            if mined > nonce:
                return f"was displaced: another transaction with nonce {nonce} was mined"
            if self._local is None:
                for h in hashes:
                    reply = self.w3.provider.make_request("eth_getTransactionByHash", ["0x" + bytes(h).hex()])
                    if not (isinstance(reply, dict) and "result" in reply and reply["result"] is None):
                        return None
                return "is no longer known to the node (its block was reorganised away, or the pool dropped it)"
        except Exception:
            return None
        return None

    def _fill_gap(self, tx: dict[str, Any], confirmed: bool) -> bool:
        """If an earlier transaction of ours was lost (a reorganisation, or a node restarted
        without its last blocks), ``tx`` waits behind the gap in its nonces for ever, and
        higher fees do not help. Fill the gap with 0-value transfers to ourselves, so that
        ``tx`` is mined as sent. (Sending ``tx`` again with a lower nonce instead would let the
        stranded copy be mined too once the gap closed: a bid placed twice.) What the lost
        transaction did is the daemons' business: they re-check their work after a reorg.

        A gap is filled only when two checks ``stuck_after`` apart both saw it (``confirmed``:
        the previous check did), since a node behind a load balancer may briefly answer from
        a backend that is behind; and at most ``MAX_GAP`` nonces: a larger gap (a dev chain
        reset under a running daemon) ends the wait with ``TransactionDropped``. Returns
        whether a gap is there now (and not filled).
        """
        nonce = int(tx["nonce"])
        try:
            reply = self.w3.provider.make_request("eth_getTransactionCount", [self.address, "pending"])
            following = int(reply["result"], 16)
        except Exception:
            return False
        if following >= nonce:
            return False
        if not confirmed:
            return True
        if nonce - following > MAX_GAP:
            with self._lock:
                self._nonce = None
            raise TransactionDropped(
                f"transaction {nonce} from {self.label} waits behind {nonce - following} lost nonces "
                f"(more than {MAX_GAP}: was the chain reset?); its nonce is read again")
        log.warning("%s: nonces %d-%d were lost (reorganisation or node restart); filling the gap so that "
                    "transaction %d can be mined", self.label, following, nonce - 1, nonce)
        fees = self.fees().bumped()
        for missing in range(following, nonce):
            if self.cancel is not None and self.cancel.is_set():
                break
            filler = {"from": self.address, "to": self.address, "value": 0, "gas": 21_000, "nonce": missing,
                      "chainId": self.chain_id, **fees.fields}
            try:
                self._submit(filler)
            except ChainError as exc:  # e.g. filled meanwhile by a resent original
                log.warning("%s: could not fill nonce %d: %s", self.label, missing, exc)
        return False

    def wait_for_own_pending(self, timeout: float, cancel: threading.Event | None = None) -> int:
        """Wait up to ``timeout`` s until the transactions this account has in the node's pool
        are mined; returns how many are still pending (0 if the node cannot tell).

        A daemon calls this when it starts: a bid sent just before a crash or a stop may still
        be pending, and a daemon that looked only at mined bids would bid again."""
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                pending = int(self.w3.eth.get_transaction_count(self.address, "pending"))
                mined = int(self.w3.eth.get_transaction_count(self.address, "latest"))
            except Exception:
                return 0
            left = pending - mined
            if left <= 0:
                if announced:
                    log.info("%s: the earlier transaction(s) are mined", self.label)
                return 0
            if time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
                log.warning("%s: %d transaction(s) sent before this start are still pending after %.0f s",
                            self.label, left, timeout)
                return left
            if not announced:
                log.info("%s: %d transaction(s) sent before this start are still pending; waiting for them "
                         "before acting", self.label, left)
                announced = True
            time.sleep(0.5)

    def _mined_nonce(self) -> int:
        """The account's next nonce counting mined transactions only."""
        return int(self.w3.provider.make_request("eth_getTransactionCount", [self.address, "latest"])["result"], 16)

    def _receipt(self, tx_hash: bytes) -> Any:
        """The receipt of ``tx_hash``, or None while it is not mined."""
        if self.batcher is None:
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                return None
        for attempt in range(RECEIPT_RETRIES + 1):  # as web3 retries its reads (connect())
            try:
                raw = self.batcher.call("eth_getTransactionReceipt", ["0x" + bytes(tx_hash).hex()])
                break
            except Exception as exc:
                if attempt == RECEIPT_RETRIES or not is_connection_error(exc):
                    raise
                time.sleep(0.1 * 2**attempt)
        if raw is None:
            return None
        return AttributeDict.recursive(receipt_formatter(raw))

    def _head(self) -> int | None:
        """The latest block number, one raw ``eth_blockNumber`` per ``HEAD_TTL`` shared by all
        signers on this connection; None if it cannot be read (then receipts are polled)."""
        with _HEAD_LOCK:
            cached = vars(self.w3).get("_dr_head")
            if cached is not None and time.monotonic() - cached[0] < HEAD_TTL:
                return cached[1]
            try:
                reply = self.w3.provider.make_request("eth_blockNumber", [])
                head = int(reply["result"], 16)
            except Exception:
                return None
            self.w3._dr_head = (time.monotonic(), head)  # type: ignore[attr-defined]
            return head

    def _failure(
        self,
        exc: Exception | None,
        decode_error: Callable[[Exception], TransactionFailed | None] | None,
        receipt: Any = None,
    ) -> ChainError:
        if exc is not None and decode_error is not None:
            decoded = decode_error(exc)
            if decoded is not None:
                return decoded
        if receipt is not None:
            failed = TransactionFailed(f"transaction {receipt['transactionHash'].hex()} from {self.label} reverted")
            failed.receipt = dict(receipt)  # type: ignore[attr-defined]  # a mined revert costs gas too
            return failed
        return TransactionFailed(f"transaction from {self.label} would revert: {exc}")
