import os
import time

import pytest

from tests.stack import make_certs, start_stack

# Snapshots must not depend on the host's terminal settings.
for var in ("NO_COLOR", "TEXTUAL_THEME", "FORCE_COLOR"):
    os.environ.pop(var, None)


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("pki"))


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
