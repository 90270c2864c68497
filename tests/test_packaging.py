"""Packaging: every package folder installs under the `fedrec` namespace, whatever the current directory holds."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_installed_under_fedrec():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(setuptools["packages"])
    on_disk = {
        "fedrec." + ".".join(init.parent.relative_to(REPO).parts)
        for top in setuptools["package-dir"].values()
        for init in (REPO / top).rglob("__init__.py")
    }
    assert on_disk == declared, f"pyproject lists {sorted(declared)}, folders are {sorted(on_disk)}"


def test_a_decoy_shared_folder_in_the_current_directory_is_not_imported(tmp_path: Path):
    """Run from a folder holding `shared/data/` (as the data folder beside this repo does): fedrec still loads."""
    for name in ("shared", "shared/data", "server", "client", "simulations"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "__init__.py").write_text("raise ImportError('decoy package imported')\n")
    code = ("import fedrec.shared.data.load, fedrec.client.app, fedrec.server.app, fedrec.simulations.run;"
            "import fedrec.shared.data.load as m; print(m.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert str(tmp_path) not in out.stdout
