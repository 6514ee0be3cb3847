"""Generate the Python protobuf/gRPC code and typed stubs from ``protos/``.

The generated code is committed; ``td_pipeline_tests/test_generated_protos.py`` regenerates it
into a temporary folder and fails on any difference, so the two never drift apart.

Usage: python scripts/generate_protos.py [OUTPUT_ROOT]   (default: the repository root)
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(output_root: Path) -> None:
    files = proto_files()
    grpc_include = Path(protoc.__file__).parent / "_proto"
    # mypy-protobuf's plugins live beside this interpreter, which may not be on PATH.
    scripts = Path(sysconfig.get_path("scripts"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{grpc_include}",
        f"--plugin=protoc-gen-mypy={scripts / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={scripts / 'protoc-gen-mypy_grpc'}",
        f"--python_out={output_root}",
        f"--grpc_python_out={output_root}",
        f"--mypy_out={output_root}",
        f"--mypy_grpc_out={output_root}",
        *(str(f.relative_to(PROTO_ROOT)) for f in files),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Every generated folder is a regular package so that mypy and setuptools see it.
    for proto in files:
        package_dir = output_root / proto.relative_to(PROTO_ROOT).parent
        while package_dir != output_root / "td_pipeline":
            (package_dir / "__init__.py").touch()
            package_dir = package_dir.parent


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT)
