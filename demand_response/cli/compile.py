"""``dr compile``: the contract into the committed artifacts."""

from __future__ import annotations

import argparse

from ._common import UserError


def add_to(commands: argparse._SubParsersAction) -> None:
    """Add ``dr compile``."""
    p = commands.add_parser("compile", help="compile the contract into the committed artifacts",
                            description="Compile contracts/ into build/contracts/ and the package's ABI copy.")
    p.add_argument("--install-shim", action="store_true",
                   help="first link the npm solcjs adapter into py-solc-x's folder as solc-v0.8.24 (for brownie)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compile with the solc the compiler module resolves."""
    from .. import compiler

    try:
        if args.install_shim:
            print(f"linked {compiler.install_solcx_shim()} -> {compiler.NPM_ADAPTER}")
        solc = compiler.resolve_solc()
        print(f"compiling with solc {solc.version} ({solc.origin}: {solc.path})…", flush=True)
        written = compiler.compile_project()
    except ImportError as exc:
        raise UserError(f"compiling needs the dev extra ({exc}); run `make bootstrap` or "
                        "pip install '.[dev]'") from None
    for name, path in written.items():
        print(f"{name}: {path} and the package's ABI copy")
    return 0
