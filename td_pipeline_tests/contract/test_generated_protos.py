"""The committed generated code must be exactly what protoc makes of protos/ today."""

from __future__ import annotations

import filecmp
import importlib.util
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATED = REPO_ROOT / "td_pipeline" / "gen"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_protos", REPO_ROOT / "scripts" / "generate_protos.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files_under(root: Path) -> set[Path]:
    return {
        path.relative_to(root)
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_committed_code_matches_the_protos(tmp_path: Path) -> None:
    _load_generator().generate(tmp_path)
    fresh = tmp_path / "td_pipeline" / "gen"

    assert _files_under(fresh) == _files_under(GENERATED), "run `make protos` and commit"
    stale = [
        str(name)
        for name in sorted(_files_under(fresh))
        if not filecmp.cmp(fresh / name, GENERATED / name, shallow=False)
    ]
    assert stale == [], f"generated code differs from protos/: {stale}; run `make protos`"
