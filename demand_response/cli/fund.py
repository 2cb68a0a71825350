"""``dr fund``: send test ETH to an address on a local dev chain."""

from __future__ import annotations

import argparse
from decimal import Decimal

from ._common import UserError, connection_options, decimal_arg, read_secret, rpc_name, settings_from


def add_to(commands: argparse._SubParsersAction) -> None:
    """Add ``dr fund``."""
    p = commands.add_parser(
        "fund", help="send test ETH to an address (local dev chains only)",
        description="Send ETH on a local dev chain (chain id 1337 or 31337) from one of the node's unlocked "
                    "accounts or from a private key. Refused on any other chain: fund live accounts from a wallet.")
    p.add_argument("address", help="the account to fund (0x…)")
    p.add_argument("--eth", type=decimal_arg, default=Decimal(1), metavar="AMOUNT",
                   help="how much ETH to send (default 1)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--from-account", type=int, default=0, metavar="N",
                        help="send from the node's unlocked account #N (default 0)")
    source.add_argument("--key-file", help="send from the private key in this file (hex) instead")
    connection_options(p, contract=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the chain is a dev chain, then send and report the new balance."""
    from web3 import Web3

    from ..chain import Signer
    from ..config import DEV_CHAIN_IDS
    from ..planner import eth_to_wei
    from ..session import connect_checked

    if not Web3.is_address(args.address):
        raise UserError(f"{args.address!r} is not an address: give 0x followed by 40 hex digits")
    to = Web3.to_checksum_address(args.address)
    wei = eth_to_wei(args.eth, "amount")
    if wei <= 0:
        raise UserError("the amount must be above 0 ETH")
    settings = settings_from(args)
    w3, chain_id = connect_checked(settings)
    if chain_id not in DEV_CHAIN_IDS:
        raise UserError(f"dr fund only sends test ETH on a local dev chain (chain id 1337 or 31337); "
                        f"the {rpc_name(settings)} is chain {chain_id}: fund the address from a wallet")
    if args.key_file:
        try:
            signer = Signer.from_key(w3, read_secret(args.key_file, "Private key (hex): "))
        except (ValueError, TypeError):
            raise UserError(f"{args.key_file} does not hold a private key (64 hex digits)") from None
    else:
        unlocked = w3.eth.accounts
        if not 0 <= args.from_account < len(unlocked):
            raise UserError(f"the node has {len(unlocked)} unlocked accounts: --from-account must be "
                            f"0 to {len(unlocked) - 1}")
        signer = Signer(w3, unlocked[args.from_account])
    receipt = signer.send({"to": to, "value": wei})
    balance = Decimal(w3.eth.get_balance(to)) / 10**18
    print(f"sent {args.eth} ETH from {signer.address} to {to} in block {receipt['blockNumber']}; "
          f"its balance is now {balance.normalize():f} ETH")
    return 0
