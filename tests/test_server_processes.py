"""Server processes as an operator runs them: `strife up`, `strife bank` on a taken port."""

import asyncio
import os
import signal
import sys

from backend.bank import ledger
from backend.common.db import connect
from backend.common.events import Event
from backend.testbed import free_port_run, free_ports


async def run(*args, timeout_s=30.0, cwd=None):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    return proc.returncode, out.decode(), err.decode()


async def test_a_second_server_on_a_taken_port_fails_at_once_with_a_clear_message(stack, tmp_path):
    taken = stack.cfg.bank_ports["BankA"]
    code, _, err = await run(
        "bank",
        "--name",
        "BankA",
        "--port",
        str(taken),
        "--data-dir",
        str(tmp_path / "other"),
        "--certs",
        str(stack.cfg.certs_dir),
    )
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{taken}: the port is in use" in err
    # the first one still serves
    assert (await stack.ledgers())["BankA"].total_cents == 175000


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_strife_up_announces_each_process_and_stops_them_all_on_sigterm(tmp_path, certs_dir):
    port = free_port_run(4)  # the gateway's, then one per bank
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "up",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
        "--certs",
        str(certs_dir),
        "--twopc-timeout",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    lines = []
    try:
        while not any("stack up" in line for line in lines):
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, f"strife up ended early: {lines} {await proc.stderr.read()!r}"
            lines.append(line.decode())
        served = {line.split()[0]: line for line in lines if "serving on" in line}
        assert set(served) == {"gateway", "BankA", "BankB", "BankC"}
        assert f"127.0.0.1:{port} " in served["gateway"]
        pids = [int(line.rsplit("pid ", 1)[1].rstrip(")\n")) for line in served.values()]
        assert all(_alive(pid) for pid in pids)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        for pid in pids:
            for _ in range(50):
                if not _alive(pid):
                    break
                await asyncio.sleep(0.1)
            assert not _alive(pid), f"child {pid} outlived strife up"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_fault_points_are_refused_outside_test_mode(tmp_path, certs_dir):
    env = {k: v for k, v in os.environ.items() if k != "STRIFE_TEST_MODE"}
    env["STRIFE_FAULTS"] = "bank.crash_after_yes"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "bank",
        "--name",
        "BankA",
        "--port",
        str(free_ports(1)[0]),
        "--data-dir",
        str(tmp_path),
        "--certs",
        str(certs_dir),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode != 0
    assert b"fault points are for tests only" in err
    assert Event.SERVING.encode() not in out


async def test_children_exit_when_their_supervisor_is_killed(tmp_path, certs_dir):
    """kill -9 of the supervisor leaves nothing running: each child watches its stdin."""
    port = free_port_run(4)  # the gateway's, then one per bank
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "up",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
        "--certs",
        str(certs_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
    )
    pids = []
    try:
        while len(pids) < 4:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, "strife up ended early"
            if "serving on" in line:
                pids.append(int(line.rsplit("pid ", 1)[1].rstrip(")\n")))
        proc.kill()
        await proc.wait()
        for pid in pids:
            for _ in range(100):
                if not _alive(pid):
                    break
                await asyncio.sleep(0.1)
            assert not _alive(pid), f"child {pid} outlived its killed supervisor"
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_a_bank_on_a_database_from_a_newer_strife_exits_with_one_clear_line(tmp_path, certs_dir):
    conn = connect(tmp_path / "bank-BankA.sqlite")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    port = str(free_ports(1)[0])
    code, out, err = await run(
        "bank", "--name", "BankA", "--port", port, "--data-dir", str(tmp_path), "--certs", str(certs_dir)
    )
    assert code == 1
    assert err.strip().splitlines() == [
        f"BankA: {tmp_path / 'bank-BankA.sqlite'}: schema version 99 is newer than this Strife knows "
        f"({len(ledger.MIGRATIONS)}): run a newer Strife"
    ]
    assert "Traceback" not in out + err and Event.SERVING not in out
