"""``dr accounts``: brownie-compatible keystores (no chain needed)."""

from __future__ import annotations

import argparse

from ._common import env_options, log_options, read_secret, settings_from

ACTIONS = (("new", "create a random account"), ("import", "import a private key"), ("list", "list keystores"))


def add_to(commands: argparse._SubParsersAction) -> None:
    """Add ``dr accounts new|import|list``."""
    p = commands.add_parser("accounts", help="keystore accounts (brownie-compatible)",
                            description="Keystores live in KEYSTORE_DIR (default ~/.brownie/accounts). "
                                        "Fund an account on a dev chain with `dr fund`.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    for action, text in ACTIONS:
        q = actions.add_parser(action, help=text)
        if action != "list":
            q.add_argument("name", help="account name (KEYSTORE_DIR/NAME.json) or a keystore path")
            q.add_argument("--password-file", help="read the password from this file instead of prompting")
        if action == "import":
            q.add_argument("--key-file", help="read the private key from this file instead of prompting")
        env_options(q)
        log_options(q)
        q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List, create or import a keystore."""
    from .. import accounts

    settings = settings_from(args)
    if args.action == "list":
        rows = accounts.list_keystores(settings)
        print(f"keystores in {accounts.keystore_dir(settings)}:")
        for name, address in rows:
            print(f"  {name:<24} {address}")
        if not rows:
            print("  (none; create one with `dr accounts new NAME`)")
        return 0
    password = read_secret(args.password_file, f"Password for {args.name}: ", confirm=True)
    if args.action == "new":
        path, address = accounts.new_keystore(args.name, password, settings=settings)
    else:
        key = read_secret(args.key_file, "Private key (hex): ")
        path, address = accounts.save_keystore(args.name, key, password, settings=settings)
    print(f"saved {address} to {path} (mode 600)")
    return 0
