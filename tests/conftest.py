import os
import time

import pytest

from tests import stack as stacks
from tests.stack import make_certs, start_stack

# Snapshots must not depend on the host's terminal settings.
for var in ("NO_COLOR", "TEXTUAL_THEME", "FORCE_COLOR"):
    os.environ.pop(var, None)


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """One embedded PostgreSQL server for the whole run; each stack gets its own databases."""
    from backend.common.embedded_pg import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _on_engine(request):
    if request.param == "postgres":
        stacks.pg_server = request.getfixturevalue("pg_server")
    stacks.engine = request.param
    try:
        yield request.param
    finally:
        stacks.engine = "sqlite"


@pytest.fixture(params=stacks.ENGINES)
def both_engines(request):
    """Run the test once on SQLite and once on PostgreSQL: the stacks it makes use that engine."""
    yield from _on_engine(request)


@pytest.fixture(scope="module", params=stacks.ENGINES)
def module_engine(request):
    """both_engines for a module that shares one stack among its tests (all on SQLite, then all
    on PostgreSQL)."""
    yield from _on_engine(request)


@pytest.fixture
async def stack(tmp_path, certs_dir):
    s = await start_stack(tmp_path, certs_dir)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def fixed_environment(monkeypatch):
    """For UI tests: times are shown in local time, make that UTC; nothing from the host's terminal."""
    for var in ("NO_COLOR", "TEXTUAL_THEME", "FORCE_COLOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def live_source(tmp_path, certs_dir):
    """The control room's live data source on a quick stack of the current engine (stopped after)."""
    from app.live_source import LiveSource

    source = LiveSource(stacks.quick_config(tmp_path, certs_dir))
    yield source
    source.kill_now()
