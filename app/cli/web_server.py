"""The web server of `strife --web`: textual-serve's, one session at a time, same-origin websockets only."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from textual_serve.server import Server

from backend.common import datadir

MAX_REFUSED_TABS = 16  # refused tabs kept open to show why; beyond this they are closed at once
STOP_TIMEOUT_S = 20.0  # how long Ctrl-C waits for the open control room to stop its stack


def refusal_text(reason: str) -> bytes:
    """What a refused tab shows in its terminal."""
    lines = [
        "\x1b[2J\x1b[H\x1b[1mThe Strife control room is not opened in this tab.\x1b[0m",
        "",
        reason,
        "",
        "One browser session at a time: each session runs the whole stack on one data directory,",
        "and two stacks on one data directory must not run. Close the other session, then reload.",
    ]
    return "\r\n".join(lines).encode()


class ControlRoomServer(Server):
    """textual-serve's server, one session at a time, same-origin websockets only."""

    def __init__(self, command: str, host: str, port: int, data_dir: Path) -> None:
        super().__init__(command, host=host, port=port, title="Strife control room")
        self.data_dir = data_dir
        self._session: asyncio.Task | None = None
        self._refused = 0

    def initialize_logging(self) -> None:
        super().initialize_logging()
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # not a line per file the page loads

    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        # The page's websocket address is the one the browser used, so it works for a
        # remote audience too (textual-serve would write the bind address, 0.0.0.0 included).
        self.public_url = f"{request.scheme}://{request.host}"
        return await super().handle_index(request)

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise web.HTTPForbidden(text="websocket from another origin")
        reason = self._busy_reason()
        if reason is not None:
            return await self._refuse(request, reason)
        self._session = asyncio.current_task()
        try:
            return await super().handle_websocket(request)
        finally:
            self._session = None

    def _busy_reason(self) -> str | None:
        if self._session is not None:
            return "The control room is open in another browser tab or window of this server."
        try:
            datadir.lock(self.data_dir).close()
        except datadir.DataDirBusy as exc:
            return f"The {exc}."
        return None

    async def _refuse(self, request: web.Request, reason: str) -> web.WebSocketResponse:
        websocket = web.WebSocketResponse(heartbeat=15)
        await websocket.prepare(request)
        if self._refused >= MAX_REFUSED_TABS:
            await websocket.close()
            return websocket
        self._refused += 1
        try:
            await websocket.send_bytes(refusal_text(reason))
            async for _ in websocket:  # keep the page until the tab goes, so the reason stays on screen
                pass
        finally:
            self._refused -= 1
        return websocket

    async def on_startup(self, app: web.Application) -> None:
        print(
            f"strife control room on http://{self.host}:{self.port}/ — one browser session at a time;"
            " Ctrl-C stops the server and the stack",
            flush=True,
        )

    async def on_shutdown(self, app: web.Application) -> None:
        """Ctrl-C: the open session's control room stops its stack before the server goes."""
        session = self._session
        if session is not None:
            session.cancel()  # textual-serve then tells the control room to quit and waits for it
            await asyncio.wait([session], timeout=STOP_TIMEOUT_S)
