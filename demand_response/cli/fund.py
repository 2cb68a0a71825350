"""``dr fund``: send test ETH, or mint the test stablecoin (TestUSD), to an address on a
local dev chain."""

from __future__ import annotations

import argparse
from decimal import Decimal

from ..units import Currency, format_amount, parse_amount
from ._common import UserError, connection_options, decimal_arg, read_secret, rpc_name, settings_from

#: The test stablecoin's unit (contracts/test/TestUSD.sol).
TEST_USD = Currency("TUSD", 6, "Test USD", fiat="USD")


def add_to(commands: argparse._SubParsersAction) -> None:
    """Add ``dr fund``."""
    p = commands.add_parser(
        "fund", help="send test ETH or test USD to an address (local dev chains only)",
        description="Send ETH on a local dev chain (chain id 1337 or 31337) from one of the node's unlocked "
                    "accounts or from a private key, or (--usd) mint the 6-decimal test stablecoin TestUSD "
                    "(TUSD), deploying it first unless --token names it. Refused on any other chain: fund "
                    "live accounts from a wallet.")
    p.add_argument("address", help="the account to fund (0x…)")
    p.add_argument("--eth", type=decimal_arg, default=None, metavar="AMOUNT",
                   help="how much ETH to send (default 1, or none with --usd)")
    p.add_argument("--usd", type=decimal_arg, default=None, metavar="AMOUNT",
                   help="mint this many TUSD (6 decimals, like USDC) to the address")
    p.add_argument("--token", metavar="ADDRESS",
                   help="the TestUSD to mint (its deployer must be the sender); default: deploy a new one")
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
    eth = args.eth if args.eth is not None or args.usd is not None else Decimal(1)
    wei = eth_to_wei(eth, "amount") if eth is not None else None
    if wei is not None and wei <= 0:
        raise UserError("the amount must be above 0 ETH")
    usd = parse_amount(args.usd, TEST_USD, what="--usd") if args.usd is not None else None
    if usd is not None and usd <= 0:
        raise UserError("the --usd amount must be above 0 TUSD")
    if args.token is not None and not Web3.is_address(args.token):
        raise UserError(f"--token {args.token!r} is not an address: give 0x followed by 40 hex digits")
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
    if wei is not None:
        receipt = signer.send({"to": to, "value": wei})
        balance = Decimal(w3.eth.get_balance(to)) / 10**18
        print(f"sent {eth} ETH from {signer.address} to {to} in block {receipt['blockNumber']}; "
              f"its balance is now {balance.normalize():f} ETH")
    if usd is not None:
        _mint_usd(signer, to, usd, args.token)
    return 0


def _mint_usd(signer, to: str, amount: int, token: str | None) -> None:
    """Mint ``amount`` base units of TestUSD to ``to``, deploying the token first if ``token`` is None."""
    from ..artifacts import load_artifact
    from ..token import Erc20, deploy_test_usd, mint_test_usd

    if token is None:
        usd = deploy_test_usd(signer)
        print(f"deployed TestUSD (TUSD, 6 decimals) at {usd.address}; pass --token {usd.address} to mint more "
              "and use it as a request's settlement token")
    else:
        usd = Erc20(signer.w3, token)
        if len(signer.w3.eth.get_code(usd.address)) == 0:
            raise UserError(f"no contract at --token {usd.address} on this chain; omit --token to deploy TestUSD")
        test_usd = signer.w3.eth.contract(address=usd.address, abi=load_artifact("TestUSD")["abi"])
        try:
            minter = test_usd.functions.minter().call()
        except Exception:
            raise UserError(f"--token {usd.address} is not a TestUSD (it has no minter()); "
                            "omit --token to deploy one") from None
        if minter != signer.address:
            raise UserError(f"{signer.address} may not mint the TestUSD at {usd.address} (only its deployer "
                            f"{minter} may): send from that account with --from-account or --key-file")
    mint_test_usd(signer, usd.address, to, amount)
    balance = format_amount(usd.balance_of(to), TEST_USD)
    print(f"minted {format_amount(amount, TEST_USD)} to {to}; its balance is now {balance}")
