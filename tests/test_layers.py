"""The import contracts of pyproject.toml ([tool.importlinter]) hold: a lower layer never
imports a higher one. The installed `inferc` namespace maps folders to subpackages, so
the check runs on a mirror tree of links (inferc/<folder> -> <folder>)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "compiler", "passes", "formats", "calibration", "runtime", "recipes")


def test_import_contracts_hold(tmp_path: Path) -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.fail("lint-imports is missing; install the dev extra: pip install -e '.[dev]'")
    pkg = tmp_path / "inferc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for folder in FOLDERS:
        (pkg / folder).symlink_to(ROOT / folder, target_is_directory=True)
    run = subprocess.run([lint, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tmp_path,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout
