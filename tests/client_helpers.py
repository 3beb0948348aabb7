"""Run `strife client` as a real subprocess against a test stack."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI_TIMEOUT_S = 90.0


async def cli(
    stack, profile: Path, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> tuple[int, dict]:
    """`python -m app.cli client ... --json ARGS`: (exit code, the one JSON object it printed)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "client",
        "--gateway",
        stack.cfg.gateway_address,
        "--certs",
        str(stack.cfg.certs_dir),
        "--profile",
        str(profile),
        "--json",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin or b""), CLI_TIMEOUT_S)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    lines = out.decode().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got stdout={out!r} stderr={err!r}"
    return proc.returncode, json.loads(lines[0])


async def begun_by(stack, user: str) -> list[dict]:
    """The gateway's `2pc begin` records of `user`'s payments, once the logs have caught up."""
    await stack.logs_caught_up()
    return [r for r in stack.begun().values() if r.get("user") == user]
