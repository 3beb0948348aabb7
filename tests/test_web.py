"""`strife --web PORT`: the control room in headless Chromium, one session at a time, no orphans.

xterm.js draws on a canvas, so the page has no text to read; the page's own websocket is wrapped
(before textual-serve's script runs) to keep what the terminal was sent, and that is what is read.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from backend.testbed import free_ports

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; .ci/run installs it
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEEP_TERMINAL_TEXT = """
window.__terminal = "";
(() => {
  const decoder = new TextDecoder();
  const Original = window.WebSocket;
  window.WebSocket = function (url, protocols) {
    const socket = protocols === undefined ? new Original(url) : new Original(url, protocols);
    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") {
        window.__terminal += decoder.decode(new Uint8Array(event.data), { stream: true });
      }
    });
    return socket;
  };
  window.WebSocket.prototype = Original.prototype;
})();
"""
ESCAPES = re.compile(r"\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
DASHBOARD = ("Processes", "2PC live", "Balances", "gateway", "BankA", "BankB", "serving")
START_TIMEOUT_S = 30


def terminal_text(page: Page) -> str:
    return ESCAPES.sub("", page.evaluate("window.__terminal"))


def open_page(browser: Browser, url: str) -> Page:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.add_init_script(KEEP_TERMINAL_TEXT)
    page.goto(url, wait_until="commit")
    return page


def wait_for_text(page: Page, *needles: str) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        text = terminal_text(page)
        if all(needle in text for needle in needles):
            return text
        missing = [needle for needle in needles if needle not in text]
        assert time.monotonic() < deadline, f"the page never showed {missing}; it got {text[-2000:]!r}"
        page.wait_for_timeout(200)


def processes_on(data_dir: Path) -> dict[int, str]:
    """pid -> command line of every process started with this data directory."""
    out = subprocess.run(["pgrep", "-af", str(data_dir)], capture_output=True, text=True).stdout
    return {int(pid): cmd for pid, cmd in (line.split(" ", 1) for line in out.splitlines())}


def wait_until_only(data_dir: Path, allowed: set[int], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while (left := {pid: cmd for pid, cmd in processes_on(data_dir).items() if pid not in allowed}) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert not left, f"left running: {left}"


def wait_for_port(port: int, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert server.poll() is None, f"strife --web exited with {server.returncode}: {log.read_text()}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert time.monotonic() < deadline, f"nothing listens on {port}: {log.read_text()}"
        time.sleep(0.1)


def websocket_status(port: int, origin: str) -> str:
    """The status line the server answers a websocket handshake from a page of `origin` with."""
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request.encode())
        return s.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def test_the_control_room_in_a_browser_one_session_at_a_time_and_nothing_outlives_it(tmp_path, certs_dir):
    assert CHROMIUM.exists(), "Debian's chromium is needed: apt-get install chromium (.ci/run does)"
    web_port, stack_port = free_ports(2)
    data_dir = tmp_path / "data"
    log = tmp_path / "web.log"
    command = [sys.executable, "-m", "app.cli", "--web", str(web_port), "--data-dir", str(data_dir)]
    command += ["--certs", str(certs_dir), "--port", str(stack_port), "--banks", "2"]
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{web_port}/"
    try:
        wait_for_port(web_port, server, log)
        assert "one browser session at a time" in log.read_text()
        assert processes_on(data_dir).keys() == {server.pid}, "the server starts nothing before a browser comes"
        # a page of another site open in the same browser must not drive the control room
        assert websocket_status(web_port, "http://elsewhere.example") == "HTTP/1.1 403 Forbidden"
        assert processes_on(data_dir).keys() == {server.pid}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
            page = open_page(browser, url)
            wait_for_text(page, *DASHBOARD)
            assert "-closed" not in page.evaluate("document.body.className")
            running = processes_on(data_dir)
            kinds = {
                next(k for k in ("--web", "backend.gateway", "backend.bank", "app.cli") if k in c)
                for c in running.values()
            }
            assert kinds == {"--web", "app.cli", "backend.gateway", "backend.bank"}, running
            assert len(running) == 1 + 1 + 1 + 2  # server, control room, gateway, two banks

            second = open_page(browser, url)  # a second stack on the same data directory must not start
            wait_for_text(second, "not opened in this tab", "open in another browser tab")
            assert processes_on(data_dir) == running

            browser.close()  # closing the tab stops the control room and its stack; the server stays
            wait_until_only(data_dir, {server.pid})
            assert server.poll() is None

            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
            page = open_page(browser, url)  # the next session gets the control room again
            wait_for_text(page, *DASHBOARD)
            server.send_signal(signal.SIGKILL)  # even a killed server leaves nothing behind
            server.wait(10)
            wait_until_only(data_dir, set())
            browser.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        for pid in processes_on(data_dir):
            subprocess.run(["kill", "-9", str(pid)], check=False)


@pytest.mark.parametrize(
    ("flags", "message", "code"),
    [
        (["--web", "0"], "port must be 1 to 65535, not 0", 2),
        (["--web", "65536"], "port must be 1 to 65535, not 65536", 2),
        (["--web", "8080", "up"], "--web serves the control room", 2),
    ],
)
def test_web_refuses_a_bad_port_or_a_command(flags, message, code, tmp_path):
    done = subprocess.run([sys.executable, "-m", "app.cli", *flags], capture_output=True, text=True, timeout=30)
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_web_on_a_port_in_use_says_so_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "--web", str(port), "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert done.stderr == f"strife: cannot serve on 127.0.0.1:{port}: address already in use\n"
    assert done.stdout == ""
