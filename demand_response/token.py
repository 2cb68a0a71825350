"""ERC-20 tokens a market settles in: read a token's currency, approve, and, on development
chains, deploy and mint the 6-decimal test stablecoin (``TestUSD``).

A request in a token escrows its budget with ``transferFrom``, so the utility approves the
market first (``DemandReduction.request_reduction(..., token=...)`` does it); payouts and
refunds are owed per currency (``owed(account, token)``, ``withdraw(signer, token)``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from web3 import Web3

from .artifacts import load_artifact
from .chain import ChainError, Signer
from .units import ETH, Currency, UnitError, currency

#: address(0): the market's name for ether.
ZERO_ADDRESS = "0x" + "00" * 20

#: The ERC-20 functions the tooling calls (any token; ``TestUSD``'s artifact adds ``mint``).
ERC20_ABI: list[dict[str, Any]] = [
    {"type": "function", "name": name, "stateMutability": "view", "inputs": inputs,
     "outputs": [{"name": "", "type": out}]}
    for name, inputs, out in (
        ("symbol", [], "string"),
        ("decimals", [], "uint8"),
        ("totalSupply", [], "uint256"),
        ("balanceOf", [{"name": "account", "type": "address"}], "uint256"),
        ("allowance", [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"}], "uint256"),
    )
] + [
    {"type": "function", "name": name, "stateMutability": "nonpayable",
     "inputs": [{"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]}
    for name in ("approve", "transfer")
]


def is_ether(token: str | None) -> bool:
    """Whether ``token`` names ether (None or address(0))."""
    return token is None or int(token, 16) == 0


class Erc20:
    """One ERC-20 token contract."""

    def __init__(self, w3: Web3, address: str) -> None:
        if not Web3.is_address(address):
            raise ChainError(f"{address!r} is not a token address: give 0x followed by 40 hex digits")
        self.w3 = w3
        self.address = Web3.to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=ERC20_ABI)

    def currency(self) -> Currency:
        """The token as a ``units.Currency``: its symbol and decimals, read from the contract."""
        return _token_currency(self.w3, self.address)

    def balance_of(self, account: str) -> int:
        """Base units ``account`` holds."""
        return int(self.contract.functions.balanceOf(Web3.to_checksum_address(account)).call())

    def allowance(self, owner: str, spender: str) -> int:
        """Base units ``spender`` may take from ``owner``."""
        return int(self.contract.functions.allowance(Web3.to_checksum_address(owner),
                                                     Web3.to_checksum_address(spender)).call())

    def approve(self, signer: Signer, spender: str, amount: int) -> dict[str, Any]:
        """Let ``spender`` take ``amount`` base units from ``signer``."""
        call = self.contract.functions.approve(Web3.to_checksum_address(spender), amount)
        return signer.send(call.build_transaction({"from": signer.address}))

    def ensure_allowance(self, signer: Signer, spender: str, amount: int) -> dict[str, Any] | None:
        """Approve ``amount`` unless ``spender`` may already take that much; the receipt, or None."""
        if self.allowance(signer.address, spender) >= amount:
            return None
        return self.approve(signer, spender, amount)

    def transfer(self, signer: Signer, to: str, amount: int) -> dict[str, Any]:
        """Send ``amount`` base units from ``signer`` to ``to``."""
        call = self.contract.functions.transfer(Web3.to_checksum_address(to), amount)
        return signer.send(call.build_transaction({"from": signer.address}))


@lru_cache(maxsize=64)
def _token_currency(w3: Web3, address: str) -> Currency:
    token = w3.eth.contract(address=address, abi=ERC20_ABI)
    try:
        symbol = str(token.functions.symbol().call())
        decimals = int(token.functions.decimals().call())
    except Exception as exc:
        raise ChainError(f"{address} does not answer symbol() and decimals() like an ERC-20 token; "
                         "check the token address") from exc
    try:
        return currency(symbol, decimals)
    except UnitError:
        return Currency(f"TOKEN-{address[2:8]}", decimals)  # a symbol the unit model cannot print


def currency_of(w3: Web3, token: str | None) -> Currency:
    """The currency ``token`` names: ETH for address(0) or None, else the token's."""
    return ETH if is_ether(token) else Erc20(w3, token).currency()


def deploy_test_usd(signer: Signer) -> Erc20:
    """Deploy ``TestUSD`` (6 decimals, minted by its deployer) from ``signer``; development chains."""
    artifact = load_artifact("TestUSD")
    factory = signer.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = signer.send(factory.constructor().build_transaction({"from": signer.address}))
    return Erc20(signer.w3, receipt["contractAddress"])


def mint_test_usd(signer: Signer, token: str, to: str, amount: int) -> dict[str, Any]:
    """Mint ``amount`` base units of the ``TestUSD`` at ``token`` to ``to`` (its deployer only)."""
    contract = signer.w3.eth.contract(address=Web3.to_checksum_address(token), abi=load_artifact("TestUSD")["abi"])
    call = contract.functions.mint(Web3.to_checksum_address(to), amount)
    return signer.send(call.build_transaction({"from": signer.address}))
