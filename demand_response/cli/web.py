"""``dr web user …``: the web app's users, roles and API tokens (no chain needed).

The users live in ``WEB_USERS_DB`` (default ``STATE_DIR/web-users.sqlite3``), the file the
web app reads (``demand_response.webusers``; docs/web.md#sign-in-and-roles).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from ._common import UserError, env_options, log_options, read_secret, settings_from

if TYPE_CHECKING:
    from ..webusers import UserStore

ACTIONS = (
    ("add", "create a user (the password is asked twice, or read from --password-file; - is stdin)"),
    ("list", "list the users, their roles, addresses, sessions and tokens"),
    ("remove", "remove a user, ending its sessions and revoking its tokens"),
    ("passwd", "change a user's password (its sessions end)"),
    ("token", "create an API token (shown once), or --list / --revoke them"),
    ("unlock", "forget a user's failed sign-ins (ends a lockout)"),
)


def add_to(commands: argparse._SubParsersAction) -> None:
    """Add ``dr web user add|list|remove|passwd|token|unlock``."""
    p = commands.add_parser("web", help="the web app's users and API tokens",
                            description="Users of the web console and dashboard, in WEB_USERS_DB "
                                        "(default STATE_DIR/web-users.sqlite3). docs/web.md.")
    groups = p.add_subparsers(dest="group", metavar="GROUP")
    user = groups.add_parser("user", help="users, roles, tokens",
                             description="Roles: operator (the utility's dashboard and actions), household "
                                         "(its own console only, bound to --address), viewer (read-only).")
    actions = user.add_subparsers(dest="action", metavar="ACTION")
    for action, text in ACTIONS:
        q = actions.add_parser(action, help=text, description=text)
        if action != "list":
            q.add_argument("name", help="the user name")
        if action == "add":
            q.add_argument("--role", required=True, choices=("operator", "household", "viewer"),
                           help="operator: the utility's dashboard; household: its own console; viewer: read-only")
            q.add_argument("--address", help="a household's Ethereum address (0x…): the account it sees and acts for")
        if action in ("add", "passwd"):
            q.add_argument("--password-file", help="read the password from this file (- : the first line of stdin) "
                                                   "instead of prompting twice")
        if action == "token":
            q.add_argument("--label", default="api", help="what the token is for (shown by --list)")
            q.add_argument("--list", action="store_true", help="list the user's tokens instead")
            q.add_argument("--revoke", metavar="ID|all", help="revoke the token with this id, or all of them")
        env_options(q)
        log_options(q)
        q.set_defaults(func=run)
    user.set_defaults(help_parser=user)


def _password(path: str | None, name: str) -> str:
    if path == "-":
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UserError("no password on stdin")
        return line
    return read_secret(path, f"Password for {name}: ", confirm=True)


def _when(ts: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "never"


def run(args: argparse.Namespace) -> int:
    """Manage the web users."""
    from ..webusers import UserStore, users_db_path

    if getattr(args, "action", None) is None:
        raise UserError("name an action: dr web user add|list|remove|passwd|token|unlock")
    path = users_db_path(settings_from(args))
    users = UserStore(path, create=args.action == "add")
    try:
        return _ACTIONS[args.action](users, args)
    finally:
        users.close()


def _add(users: "UserStore", args: argparse.Namespace) -> int:
    user = users.add(args.name, args.role, _password(args.password_file, args.name), args.address)
    bound = f", bound to {user.address}" if user.address else ""
    print(f"added {user.name} ({user.role}{bound}) to {users.path}; sign in at /login")
    return 0


def _list(users: "UserStore", args: argparse.Namespace) -> int:
    rows = users.users()
    print(f"web users in {users.path}:")
    tokens = users.tokens()
    for user in rows:
        count = sum(token.user == user.name for token in tokens)
        print(f"  {user.name:<20} {user.role:<9} {user.address or '-':<42} "
              f"sessions {users.sessions(user.name)}, tokens {count}, password set {_when(user.changed_at)}")
    if not rows:
        print("  (none; add one with `dr web user add NAME --role operator`)")
    return 0


def _remove(users: "UserStore", args: argparse.Namespace) -> int:
    users.remove(args.name)
    print(f"removed {args.name}: its sessions ended and its tokens are revoked")
    return 0


def _passwd(users: "UserStore", args: argparse.Namespace) -> int:
    users.need(args.name)
    users.set_password(args.name, _password(args.password_file, args.name))
    print(f"changed the password of {args.name}; its sessions ended (API tokens stay until revoked)")
    return 0


def _token(users: "UserStore", args: argparse.Namespace) -> int:
    if args.list:
        rows = users.tokens(users.need(args.name).name)
        for token in rows:
            print(f"  {token.id:>4}  {token.label:<20} made {_when(token.created_at)}, last used {_when(token.last_used)}")
        if not rows:
            print(f"  ({args.name} has no token)")
        return 0
    if args.revoke:
        if args.revoke != "all" and not args.revoke.isdigit():
            raise UserError(f"--revoke takes a token id (`dr web user token {args.name} --list`) or all")
        count = users.revoke_token(args.name, None if args.revoke == "all" else int(args.revoke))
        print(f"revoked {count} token(s) of {args.name}")
        return 0
    token, secret = users.new_token(args.name, args.label)
    print(secret)
    print(f"token {token.id} of {token.user} ({token.label}): shown once, send it as "
          "'Authorization: Bearer <token>'", file=sys.stderr)
    return 0


def _unlock(users: "UserStore", args: argparse.Namespace) -> int:
    users.need(args.name)
    print(f"forgot {users.unlock(args.name)} failed sign-in(s) of {args.name}")
    return 0


_ACTIONS = {"add": _add, "list": _list, "remove": _remove, "passwd": _passwd, "token": _token, "unlock": _unlock}
