"""`strife client ...`: the command-line client of the gateway.

Every command takes --json and then prints exactly one JSON object: the result,
or {"error": {"code": <gRPC status name>, "message": ...}}. Exit codes below.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
import traceback
from pathlib import Path

from backend.client import DEFAULT_GATEWAY, DEFAULT_PROFILE, ClientError, GatewayClient
from backend.client.balancer import POLICIES
from backend.common.money import format_cents
from backend.common.states import PaymentStatus

EXIT_OK = 0  # done: paid, or the command succeeded
EXIT_ERROR = 1  # an error; with --json its code is the gRPC status name
EXIT_USAGE = 2  # bad command line
EXIT_QUEUED = 3  # accepted into the outbox but not delivered yet (gateway down, log in again, ...)
EXIT_DECLINED = 4  # the gateway's final answer was no (e.g. insufficient funds); nothing moved
PASSWORD_ENV = "STRIFE_PASSWORD"
MAX_SYNC_WAIT_S = 24 * 3600.0

EPILOG = f"""\
exit codes: {EXIT_OK} ok / paid; {EXIT_ERROR} error (with --json: {{"error": {{"code", "message"}}}});
{EXIT_USAGE} bad command line; {EXIT_QUEUED} payment queued, not delivered yet (pay, sync);
{EXIT_DECLINED} payment declined (pay).
passwords: give PASSWORD as "-" (or leave it out for login) to read it from ${PASSWORD_ENV}
or, if that is unset, from a prompt, so it stays out of your shell history.
"""


# ------------------------------------------------------------- arguments --
def _json_error(parser: argparse.ArgumentParser, message: str):
    if "--json" in sys.argv[1:]:
        print(json.dumps({"error": {"code": "INVALID_ARGUMENT", "message": f"{parser.prog}: {message}"}}))
        sys.exit(EXIT_USAGE)
    parser.print_usage(sys.stderr)
    parser.exit(EXIT_USAGE, f"{parser.prog}: error: {message}\n")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # noqa: D102 - argparse hook
        _json_error(self, message)


def _common(p: argparse.ArgumentParser, top: bool) -> None:
    """The client flags: on `strife client` itself and, so they may follow the command, on each command."""
    d = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    p.add_argument(
        "--gateway",
        default=d(DEFAULT_GATEWAY),
        metavar="HOST:PORT[,HOST:PORT…]",
        help=f"the gateway, or any replicas of a gateway tier (the rest are found) (default {DEFAULT_GATEWAY})",
    )
    p.add_argument(
        "--lb",
        choices=POLICIES,
        default=d("pick_first"),
        help="how calls are spread over the tier's replicas (default pick_first)",
    )
    p.add_argument(
        "--region", default=d(None), metavar="REGION", help="prefer the replicas of this region while one is healthy"
    )
    p.add_argument(
        "--certs",
        type=Path,
        default=d(Path("certs")),
        metavar="DIR",
        help="certificate directory holding ca.crt and the 'client' role certificate (default certs/)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=d(DEFAULT_PROFILE),
        metavar="DIR",
        help=f"profile directory: session and offline outbox (default {DEFAULT_PROFILE})",
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=d(False),
        help="print exactly one JSON object (the result or the error) instead of text",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "Talk to the Strife gateway: log in, see balances, pay, and manage the offline queue."
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    # JSON usage errors under --json. The parser is made by `strife`'s subparsers, so its hook is patched.
    p.error = lambda message: _json_error(p, message)  # type: ignore[method-assign]
    _common(p, top=True)
    p.set_defaults(_client_parser=p)
    sub = p.add_subparsers(dest="client_command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(
            name, help=help, description=help, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        _common(c, top=False)
        c.set_defaults(client_run=name)
        return c

    c = command("register", "create a user, linked to an account the user holds at a bank")
    c.add_argument("username", metavar="USER", help="3-32 lowercase letters, digits, '_', '.', '-'")
    c.add_argument("password", metavar="PASSWORD", help=f'8-256 characters; "-" reads ${PASSWORD_ENV} or prompts')
    c.add_argument("bank", metavar="BANK", help="bank of the account, e.g. BankA")
    c.add_argument("account", metavar="ACCOUNT", help="account id at that bank, e.g. A-1002")

    c = command("login", "log in and keep the session in the profile (replaces any other user's session)")
    c.add_argument("username", metavar="USER")
    c.add_argument(
        "password",
        metavar="PASSWORD",
        nargs="?",
        default="-",
        help=f'the password; "-" or left out reads ${PASSWORD_ENV} or prompts',
    )

    command("logout", "revoke the token and forget the session (your queued payments stay queued)")

    c = command("link", "link another account you hold to your user")
    c.add_argument("bank", metavar="BANK")
    c.add_argument("account", metavar="ACCOUNT")

    command("balance", "each of your accounts and the total across banks (unreachable banks are marked)")

    c = command("pay", "pay an account; queued in the outbox and retried if the gateway is unreachable")
    c.add_argument("bank", metavar="BANK", help="payee's bank, e.g. BankB")
    c.add_argument("account", metavar="ACCOUNT", help="payee's account id, e.g. B-2001")
    c.add_argument("amount", metavar="AMOUNT", help="in currency units with at most 2 decimals, e.g. 12.50")
    c.add_argument(
        "--from",
        dest="from_",
        metavar="BANK[/ACCOUNT]",
        help="which of your accounts pays (needed when you hold more than one)",
    )

    c = command("history", "your payments, sent and received, newest first")
    c.add_argument("--limit", type=int, default=20, metavar="N", help="how many (1-100, default 20)")
    c.add_argument("--page-token", default="", metavar="TOKEN", help="continue after a previous page")

    command("gateways", "list the live replicas of the gateway tier: id, address, region, calls in flight")

    c = command("watch", "print your payments' state changes as they happen, until Ctrl-C (JSON lines with --json)")
    c.add_argument(
        "--cursor",
        default="",
        metavar="CURSOR",
        help="go on after this event's cursor (printed with each event); '0' = from the start (default: from now)",
    )
    c.add_argument("--count", type=int, default=0, metavar="N", help="stop after N events (default: never)")

    c = command("queue", "list the offline outbox: payments not delivered yet, and recent final answers")
    c.add_argument("--all-users", action="store_true", help="also list entries of users other than the one logged in")

    c = command("sync", "send your queued payments now")
    c.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep retrying with backoff until the queue is empty or SECONDS have passed (default 0: one round)",
    )


# ------------------------------------------------------------ the commands --
def _password(given: str) -> str:
    if given != "-":
        return given
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    try:
        return getpass.getpass("password: ")
    except (EOFError, KeyboardInterrupt):
        raise ClientError("INVALID_ARGUMENT", f"no password given: pass it, set ${PASSWORD_ENV}, or type it") from None


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _in(t: float | None) -> str:
    if t is None:
        return "-"
    return "now" if t <= time.time() else f"in {t - time.time():.1f} s"


class Result:
    """What a command returns: a JSON object, the text for people, and the exit code."""

    def __init__(self, data: dict, text: str, exit_code: int = EXIT_OK) -> None:
        self.data, self.text, self.exit_code = data, text, exit_code


async def _register(client: GatewayClient, args) -> Result:
    user = await client.register(args.username, _password(args.password), args.bank, args.account)
    return Result(
        {"registered": user, "account": {"bank": args.bank, "account_id": args.account}},
        f"registered {user} with {args.bank}/{args.account}; now run: strife client login {user}",
    )


async def _login(client: GatewayClient, args) -> Result:
    session = await client.login(args.username, _password(args.password))
    queued = client.outbox.count(session.username)
    text = f"logged in as {session.username} (session expires {_when(session.expires_at)})"
    if queued:
        text += f"\n{queued} queued payment(s) of {session.username}: run `strife client sync` to send them"
    return Result(
        {
            "username": session.username,
            "expires_at": session.expires_at,
            "accounts": [{"bank": b, "account_id": a} for b, a in session.accounts],
            "queued": queued,
        },
        text,
    )


async def _logout(client: GatewayClient, args) -> Result:
    session = client.session
    if session is None:
        return Result({"logged_out": None, "revoked": False}, "not logged in")
    revoked = await client.logout()
    text = f"logged out {session.username}"
    if not revoked:
        text += " here; the gateway was unreachable, so the token was not revoked there (it expires by itself)"
    return Result({"logged_out": session.username, "revoked": revoked}, text)


async def _link(client: GatewayClient, args) -> Result:
    accounts = await client.link(args.bank, args.account)
    return Result(
        {"accounts": [{"bank": b, "account_id": a} for b, a in accounts]},
        "your accounts: " + ", ".join(f"{b}/{a}" for b, a in accounts),
    )


async def _balance(client: GatewayClient, args) -> Result:
    balance = await client.balance()
    lines = [f"{balance.username}:"]
    for a in balance.accounts:
        name = f"{a.bank}/{a.account_id}"
        if not a.reachable:
            lines.append(f"  {name:<20} {'unreachable':>16}  ({a.bank} did not answer)")
        elif a.available_cents != a.balance_cents:
            lines.append(
                f"  {name:<20} {format_cents(a.balance_cents):>16}  (available {format_cents(a.available_cents)})"
            )
        else:
            lines.append(f"  {name:<20} {format_cents(a.balance_cents):>16}")
    total = f"  {'total':<20} {format_cents(balance.total_cents):>16}"
    if balance.unreachable_banks:
        total += f"  (without {', '.join(balance.unreachable_banks)}: unreachable)"
    lines.append(total)
    return Result(balance.to_json(), "\n".join(lines))


async def _pay(client: GatewayClient, args) -> Result:
    from_bank = from_account = None
    if args.from_:
        from_bank, _, from_account = args.from_.partition("/")
        from_account = from_account or None
    d = await client.pay(args.bank, args.account, args.amount, from_bank=from_bank, from_account=from_account)
    amount = format_cents(d.amount_cents)
    source = f" from {d.from_bank}/{d.from_account}" if d.from_bank else ""
    if d.status == PaymentStatus.SUCCEEDED:
        return Result(d.to_json(), f"paid {amount}{source} to {d.payee} (payment {d.payment_id})")
    if d.status == PaymentStatus.DECLINED:
        return Result(d.to_json(), f"declined: {d.reason}; {amount} to {d.payee} was not paid", EXIT_DECLINED)
    why = d.error.message if d.error else d.status
    return Result(
        d.to_json(),
        f"queued: {why}\n{amount}{source} to {d.payee} waits in the outbox under key {d.idempotency_key};"
        f" it is sent again by `strife client sync`",
        EXIT_QUEUED,
    )


async def _history(client: GatewayClient, args) -> Result:
    history = await client.history(args.limit, args.page_token)
    lines = []
    for p in history.payments:
        arrow = "to  " if p.direction == "sent" else "from"
        sign = "-" if p.direction == "sent" else "+"
        status = p.status + (f" ({p.reason})" if p.reason else "")
        lines.append(
            f"{_when(p.created_at)}  {sign}{format_cents(p.amount_cents):>14}  {arrow} {p.counterparty:<20} {status}"
        )
    if not lines:
        lines.append("no payments yet")
    if history.next_page_token:
        lines.append(f"more: strife client history --page-token {history.next_page_token}")
    return Result(history.to_json(), "\n".join(lines))


def _entry_line(e) -> str:
    error = f"  last error: {e.last_code}: {e.last_error}" if e.last_code else ""
    return (
        f"  {e.idempotency_key}  {format_cents(e.amount_cents):>12} to {e.payee:<16} "
        f"user {e.username}, attempts {e.attempts}, next retry {_in(e.next_retry_at)}{error}"
    )


async def _queue(client: GatewayClient, args) -> Result:
    session = client.session
    username = session.username if session else None
    everyone = args.all_users or username is None
    entries = client.outbox.entries(None if everyone else username)
    others = 0 if everyone else client.outbox.count() - len(entries)
    finished = client.outbox.sent(None if everyone else username, limit=20)
    lines = [f"{len(entries)} queued" + (f" (and {others} of other users: --all-users)" if others else "")]
    lines += [_entry_line(e) for e in entries]
    if finished:
        lines.append("recent final answers:")
        for s in finished:
            detail = f" ({s.code}: {s.reason})" if s.code != "OK" else (f" ({s.reason})" if s.reason else "")
            lines.append(
                f"  {s.idempotency_key}  {format_cents(s.amount_cents):>12} to {s.payee:<16} {s.status}{detail}"
            )
    return Result(
        {
            "username": username,
            "queued": [e.to_json() for e in entries],
            "other_users": others,
            "finished": [s.to_json() for s in finished],
        },
        "\n".join(lines),
    )


async def _sync(client: GatewayClient, args) -> Result:
    if not 0 <= args.wait <= MAX_SYNC_WAIT_S:
        raise ClientError("INVALID_ARGUMENT", f"--wait must be 0 to {MAX_SYNC_WAIT_S:.0f} seconds")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.wait
    report = await client.sync(due_only=False)
    deliveries = list(report.deliveries)
    rounds = 1
    while report.remaining and loop.time() < deadline:
        next_due = min(e.next_retry_at for e in report.remaining)
        pause = min(max(0.05, next_due - time.time()), deadline - loop.time())
        if report.stopped_by is not None and report.stopped_by.code == "UNAUTHENTICATED":
            break  # waiting does not help: the user must log in again
        await asyncio.sleep(pause)  # backoff until the next entry is due, not a stand-in for a condition
        report = await client.sync(due_only=True)
        deliveries += report.deliveries
        rounds += 1
    report.deliveries = deliveries
    data = {**report.to_json(), "rounds": rounds}
    lines = []
    for d in deliveries:
        amount = format_cents(d.amount_cents)
        if d.status == PaymentStatus.SUCCEEDED:
            lines.append(f"paid {amount} to {d.payee} (key {d.idempotency_key}{', replayed' if d.replayed else ''})")
        elif d.status == PaymentStatus.DECLINED:
            lines.append(f"declined: {d.reason}; {amount} to {d.payee} (key {d.idempotency_key})")
        else:
            assert d.error is not None  # REJECTED, EXPIRED and QUEUED say why
            what = d.status.lower() if d.final else "still queued"
            lines.append(f"{what}: {d.error.code}: {d.error.message}; {amount} to {d.payee}")
    lines.append(
        f"{len(report.remaining)} payment(s) of {report.username} still queued"
        + (f"; {report.other_users} of other users untouched" if report.other_users else "")
    )
    return Result(data, "\n".join(lines), EXIT_QUEUED if report.remaining else EXIT_OK)


async def _gateways(client: GatewayClient, args) -> Result:
    replicas = await client.gateways()
    lines = [f"{len(replicas)} live replica(s):"]
    lines += [f"  {r.replica_id:<16} {r.address:<22} region {r.region:<10} in flight {r.in_flight}" for r in replicas]
    return Result({"gateways": [r.to_json() for r in replicas]}, "\n".join(lines))


async def _watch(client: GatewayClient, args) -> Result:
    if args.count < 0:
        raise ClientError("INVALID_ARGUMENT", "--count must be 0 (never stop) or more")
    seen = 0
    last = args.cursor
    async for event in client.watch(args.cursor):
        seen += 1
        last = event.cursor
        if args.json:
            print(json.dumps(event.to_json()), flush=True)
        else:
            reason = f" ({event.reason})" if event.reason else ""
            print(
                f"{_when(event.at)}  {event.kind:<9} {format_cents(event.amount_cents):>12} "
                f"{event.from_bank}/{event.from_account} -> {event.to_bank}/{event.to_account}"
                f"  payment {event.payment_id}{reason}  [cursor {event.cursor}]",
                flush=True,
            )
        if args.count and seen >= args.count:
            break
    return Result({"events": seen, "cursor": last}, "", EXIT_OK)


COMMANDS = {
    "register": _register,
    "login": _login,
    "logout": _logout,
    "link": _link,
    "balance": _balance,
    "pay": _pay,
    "history": _history,
    "gateways": _gateways,
    "watch": _watch,
    "queue": _queue,
    "sync": _sync,
}


async def run(args: argparse.Namespace) -> Result:
    async with GatewayClient(args.gateway, args.certs, args.profile, lb=args.lb, region=args.region) as client:
        return await COMMANDS[args.client_run](client, args)


def main(args: argparse.Namespace) -> None:
    if getattr(args, "client_run", None) is None:
        _json_error(
            args._client_parser,
            "say which command: register, login, logout, link, balance, pay, history, gateways, watch, queue or sync",
        )
    try:
        result = asyncio.run(run(args))
    except Exception as exc:  # noqa: BLE001 - still one JSON object, still a non-zero exit
        if not isinstance(exc, ClientError):
            traceback.print_exc()
            exc = ClientError("INTERNAL", f"client bug: {type(exc).__name__}: {exc}")
        if args.json:
            print(json.dumps({"error": exc.to_json()}))
        else:
            print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        sys.exit(130)
    if args.client_run == "watch":  # it printed its events as they came: one line each
        sys.exit(result.exit_code)
    print(json.dumps(result.data, default=str) if args.json else result.text)
    sys.exit(result.exit_code)
