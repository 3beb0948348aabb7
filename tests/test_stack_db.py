"""`--db` for a whole stack: `strife up --db postgres|postgresql://…` and the control room on its
embedded PostgreSQL server (a row in Processes that k, f and r act on), with real processes."""

import asyncio
import os
import signal
import sys
from types import SimpleNamespace
from urllib.parse import urlsplit

import psycopg
import pytest

from app.app import StrifeApp
from app.cli.stack_db import SERVER_NAME, StackDatabase
from app.live_source import LiveSource
from app.widgets.outbox_panel import OutboxPanel
from app.widgets.process_panel import ProcessPanel
from backend.common.states import PaymentStatus, ProcessState
from backend.testbed import free_port_run, free_ports
from tests.client_helpers import cli
from tests.stack import exited, quick_config
from tests.test_control_room_live import balance, log_in, pay, started, states, until

SIZE = (120, 40)


async def strife(*args: str, timeout_s: float = 60.0, prelude: str = "") -> tuple[int, str, str]:
    """`python -m app.cli ARGS` to the end: (exit code, stdout, stderr). `prelude`: Python run first."""
    code = f"import sys\n{prelude}\nfrom app.cli.main import main\nmain(sys.argv[1:])"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def pids_using(path) -> list[int]:
    """Processes whose command line names `path` (a test's own data directory)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if os.fsencode(str(path)) in f.read() and not exited(int(entry)):
                        found.append(int(entry))
            except OSError:
                pass
    return found


async def test_strife_up_on_embedded_postgres_pays_and_stops_everything(tmp_path, certs_dir):
    port = free_port_run(4)  # the gateway's, then one per bank
    data = tmp_path / "data"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "up",
        "--db",
        "postgres",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--certs",
        str(certs_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    lines: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while not any(line.startswith("stack up") for line in lines):
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line, f"strife up ended early: {lines} {await proc.stderr.read()!r}"
            lines.append(line.decode())
        served = {line.split()[0]: int(line.rsplit("pid ", 1)[1].rstrip(")\n")) for line in lines if "serving" in line}
        assert set(served) == {SERVER_NAME, "gateway", "BankA", "BankB", "BankC"}
        assert "embedded PostgreSQL" in lines[-1]
        # The server's password stays off every command line (children get it in PGPASSWORD).
        password = (data / "postgres" / "password").read_text().strip()
        for pid in served.values():
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert password.encode() not in f.read()
        server = StackDatabase("postgres", data).server
        assert server is not None
        with psycopg.connect(server.uri("postgres")) as conn:
            names = {row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'strife_%'")}
        assert names == {"strife_gateway", "strife_bank_banka", "strife_bank_bankb", "strife_bank_bankc"}

        stack = SimpleNamespace(cfg=SimpleNamespace(gateway_address=f"127.0.0.1:{port}", certs_dir=certs_dir))
        code, _ = await cli(stack, tmp_path / "bob", "login", "bob", env={"STRIFE_PASSWORD": "bob-demo-pw"})
        assert code == 0
        code, paid = await cli(stack, tmp_path / "bob", "pay", "BankC", "C-3001", "3.00")
        assert code == 0 and paid["status"] == PaymentStatus.SUCCEEDED

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        for pid in served.values():
            for _ in range(100):
                if exited(pid):
                    break
                await asyncio.sleep(0.1)
            assert exited(pid), f"{pid} outlived strife up"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
def too_new(pg_server):
    """Databases with the prefix `toonew` on the session's server, BankA's at schema version 99."""
    with psycopg.connect(pg_server.create_database("toonew_bank_banka"), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1, 99) ON CONFLICT (id) DO UPDATE SET version = 99")
    return pg_server.uri("toonew")


@pytest.fixture
def limited_role(pg_server):
    """A role that may log in but not create databases."""
    with psycopg.connect(pg_server.uri("postgres"), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS limited")
        conn.execute("CREATE ROLE limited LOGIN PASSWORD 'limited-pw' NOCREATEDB")
    port = urlsplit(pg_server.uri("postgres")).port
    return f"postgresql://limited:limited-pw@127.0.0.1:{port}/lim"


async def test_bad_db_values_each_give_one_line_and_exit_1(tmp_path, certs_dir, pg_server, too_new, limited_role):
    port = urlsplit(pg_server.uri("postgres")).port
    cases = {  # what --db says -> (what the one line must say, Python run first)
        "nonsense": ("expected sqlite, postgres or a postgresql://", ""),
        "postgresql://nobody@127.0.0.1:1/x": ("cannot connect to postgresql://nobody@127.0.0.1:1/", ""),
        f"postgresql://postgres:wrong-pw@127.0.0.1:{port}/": ("password authentication failed", ""),
        too_new: ("toonew_bank_banka: schema version 99 is newer than this Strife knows", ""),
        limited_role: ("limited may not create databases: create lim_gateway, lim_bank_banka, ", ""),
        "postgres": ("pgserver is not installed: pip install -e '.[postgres]'", "sys.modules['pgserver'] = None"),
    }

    async def up(i: int, db: str, prelude: str) -> tuple[int, str, str]:
        data = tmp_path / f"data{i}"
        where = ["--data-dir", str(data), "--certs", str(certs_dir), "--port", str(free_ports(1)[0])]
        return await strife("up", "--db", db, *where, prelude=prelude)

    results = await asyncio.gather(*(up(i, db, prelude) for i, (db, (_, prelude)) in enumerate(cases.items())))
    for i, ((db, (says, _)), (code, out, err)) in enumerate(zip(cases.items(), results, strict=True)):
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1, (db, code, out, err)
        assert lines[0].startswith("strife up: ") and says in lines[0], (db, err)
        assert "Traceback" not in out + err and "wrong-pw" not in out + err and "limited-pw" not in out + err
        assert "stack up" not in out
        assert pids_using(tmp_path / f"data{i}") == [], f"{db}: a process is left running"

    # the control room refuses a bad value before opening a screen
    code, out, err = await strife("--db", "nonsense", "--data-dir", str(tmp_path / "room"), "--certs", str(certs_dir))
    assert code == 1 and err.strip().splitlines() == [
        "strife: --db: expected sqlite, postgres or a postgresql://user@host[:port]/[prefix] URI, got 'nonsense'"
    ]


@pytest.fixture
def pg_source(tmp_path, certs_dir):
    cfg = quick_config(tmp_path, certs_dir)
    source = LiveSource(cfg, database=StackDatabase("postgres", cfg.data_dir))
    yield source
    source.kill_now()


def server_row(app):
    return next(p for p in app.query_one(ProcessPanel).processes if p.name == SERVER_NAME)


async def test_control_room_kills_and_restarts_its_postgres_and_the_stack_rides_it_out(pg_source):
    app = StrifeApp(pg_source)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        row = server_row(app)
        assert list(states(app)) == ["gateway", "BankA", "BankB", "BankC", SERVER_NAME]  # last: 1-4 stay
        assert row.kind == "database" and row.pid and row.port
        await until(pilot, lambda: server_row(app).health == "SERVING", 10, "postgres healthy (a login)")
        await log_in(pilot, "bob", "bob-demo-pw")

        await pilot.press("5", "f")  # freeze: up, answering nothing; thaw: back
        await until(pilot, lambda: server_row(app).state == ProcessState.FROZEN, 5, "postgres frozen")
        await until(pilot, lambda: server_row(app).health == "NOT_SERVING", 5, "a frozen server takes no login")
        await pilot.press("5", "f")
        await until(pilot, lambda: server_row(app).health == "SERVING", 5, "postgres thawed")

        await pilot.press("5", "k")
        await until(pilot, lambda: server_row(app).state == ProcessState.OFFLINE, 10, "postgres offline")
        assert exited(row.pid)
        await pilot.press("c")
        outcome = await pay(pilot, "BankC", "C-3001", "4.00")
        assert outcome.startswith("queued 4.00 to BankC/C-3001 (UNAVAILABLE)"), outcome
        assert {states(app)[n] for n in ("gateway", "BankA", "BankB", "BankC")} == {ProcessState.SERVING}

        await pilot.press("d", "5", "r")
        await until(pilot, lambda: server_row(app).state == ProcessState.SERVING, 30, "postgres serving again")
        assert server_row(app).restarts == 1 and server_row(app).pid != row.pid
        await until(pilot, lambda: not app.query_one(OutboxPanel).entries, 30, "the queue drained")
        await until(pilot, lambda: balance(app, "BankC", "C-3001") == 60000 + 400, 10, "BankC credited once")
        await until(pilot, lambda: balance(app, "BankB", "B-2001") == 75000 - 400, 10, "BankB debited once")
        await pilot.press("c")
        outcome = await pay(pilot, "BankC", "C-3001", "1.00")
        assert outcome.startswith("paid 1.00 to BankC/C-3001"), outcome
        pid = server_row(app).pid
        await pilot.press("q", "y")
    assert exited(pid), "the control room's postgres outlived it"
