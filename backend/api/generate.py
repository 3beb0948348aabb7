"""Generate the Python gRPC code in this folder from proto/strife.proto.

Run `python -m backend.api.generate` after changing the proto;
tests/test_generated_code.py fails when the committed code is stale.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto" / "strife.proto"
GENERATED = ("strife_pb2.py", "strife_pb2.pyi", "strife_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Write the generated files under out_root/backend/api/ and return their paths."""
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path=backend/api={PROTO.parent}",
        f"--proto_path={include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        "backend/api/strife.proto",
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return [out_root / "backend" / "api" / name for name in GENERATED]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            (ROOT / "backend" / "api" / path.name).write_bytes(path.read_bytes())
            print(f"wrote backend/api/{path.name}", file=sys.stderr)


if __name__ == "__main__":
    main()
