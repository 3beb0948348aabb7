"""`strife --web PORT`: the control room in a browser (textual-serve), for a projector or a remote audience.

The web server runs `strife` with the same flags minus the `--web` ones in a subprocess for each browser
connection, and that subprocess is a whole control room: it launches its own gateway and banks on the
data directory and ports of those flags. Two stacks on one data directory must never run, so there is
one browser session at a time: a second tab (or a `strife` already running on the data directory) gets
a page that says why, and nothing is started for it. Closing the tab stops that control room and its
stack, as `q` does in a terminal; so does the server's going, even by SIGKILL (the session's control
room watches for it).

The server binds 127.0.0.1 unless `--web-host` says otherwise. It has no log-in: whoever reaches the
port can kill the stack's processes. A websocket from a page of another origin is refused, so a web
site open in the same browser cannot drive the control room.
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import signal
import socket
import sys
import threading
import time

WEB_FLAGS = ("--web", "--web-host")
DEFAULT_HOST = "127.0.0.1"
SERVER_PID_ENV = "STRIFE_WEB_SERVER_PID"  # set by the server for its sessions' control rooms
SERVER_POLL_S = 0.5


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1 to 65535, not {port}")
    return port


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--web",
        type=port_number,
        metavar="PORT",
        help="serve the control room to a browser on http://HOST:PORT instead of this terminal"
        " (one browser session at a time; closing the tab stops the stack)",
    )
    p.add_argument(
        "--web-host",
        default=DEFAULT_HOST,
        metavar="HOST",
        help=f"address --web listens on (default {DEFAULT_HOST}, this machine only). There is no log-in:"
        " whoever reaches it can kill the stack's processes",
    )


def control_room_command(argv: list[str]) -> str:
    """The shell command of one browser session: this `strife` with the same flags minus the web ones."""
    web_only = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in WEB_FLAGS:
        web_only.add_argument(flag)
    _, rest = web_only.parse_known_args(argv)
    return "exec " + shlex.join([sys.executable, "-m", "app.cli", *rest])


def exit_with_server() -> None:
    """In a browser session's control room: stop (SIGTERM, which the control room handles as a clean
    quit, its stack included) once the web server that started it is gone. textual-serve's driver
    does not quit when its input closes, so without this a killed server would leave the control
    room and its stack running."""
    server_pid = os.environ.pop(SERVER_PID_ENV, None)
    if server_pid is None:
        return

    def watch() -> None:
        while os.getppid() == int(server_pid):
            time.sleep(SERVER_POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="web-server-watch", daemon=True).start()


def port_free(host: str, port: int) -> str | None:
    """None if host:port can be listened on now, else why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"unknown host {host!r}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
        try:
            s.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "address already in use"
            return exc.strerror or str(exc)
    return None


def main(args: argparse.Namespace, argv: list[str]) -> None:
    problem = port_free(args.web_host, args.web)
    if problem is not None:
        print(f"strife: cannot serve on {args.web_host}:{args.web}: {problem}", file=sys.stderr)
        sys.exit(1)
    from app.cli.web_server import ControlRoomServer  # aiohttp and textual-serve: only when serving

    os.environ[SERVER_PID_ENV] = str(os.getpid())  # the sessions' control rooms inherit it

    server = ControlRoomServer(control_room_command(argv), args.web_host, args.web, args.data_dir.resolve())
    try:
        server.serve()
    except OSError as exc:  # lost the port between the check and the bind
        print(f"strife: cannot serve on {args.web_host}:{args.web}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
