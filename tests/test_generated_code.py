"""The committed code in backend/api/ must be what proto/strife.proto generates."""

from pathlib import Path

from backend.api.generate import GENERATED, ROOT, generate


def test_generated_code_is_fresh(tmp_path: Path):
    for fresh in generate(tmp_path):
        committed = ROOT / "backend" / "api" / fresh.name
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"backend/api/{fresh.name} is stale: run `python -m backend.api.generate`"
        )
    assert {p.name for p in (tmp_path / "backend" / "api").iterdir()} >= set(GENERATED)
