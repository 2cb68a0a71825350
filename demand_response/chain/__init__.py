"""Connections, signers and transactions, one module per job:

* ``connection``: ``connect`` (a Web3 for an HTTP, WebSocket or IPC endpoint) and ``redact_url``;
* ``fees``: EIP-1559 or legacy fee fields, shared for a moment by a fleet's signers;
* ``signer``: ``Signer``, which sends from one account (nonces, receipts, replacements, gaps);
* ``batcher``: ``RpcBatcher``, a fleet's calls as JSON-RPC batches.

``from demand_response.chain import Signer, connect, ...`` keeps working; the error types
live in ``demand_response.errors`` and are re-exported here for older imports.
"""

from __future__ import annotations

from ..errors import ChainError, Retry, TransactionDropped, TransactionFailed, WaitInterrupted
from .batcher import RpcBatcher
from .connection import LOCAL_TIMEOUT, connect, redact_url
from .fees import FEES_TTL, REPLACEMENT_BUMP, Fees
from .signer import DEFAULT_RECEIPT_TIMEOUT, HEAD_TTL, MAX_GAP, RECEIPT_RETRIES, Signer

__all__ = [
    "DEFAULT_RECEIPT_TIMEOUT", "FEES_TTL", "HEAD_TTL", "LOCAL_TIMEOUT", "MAX_GAP", "RECEIPT_RETRIES",
    "REPLACEMENT_BUMP", "ChainError", "Fees", "Retry", "RpcBatcher", "Signer", "TransactionDropped",
    "TransactionFailed", "WaitInterrupted", "connect", "redact_url",
]
