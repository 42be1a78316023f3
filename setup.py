"""Maps each top-level folder to a subpackage of the `inferc` namespace.

The package list is derived from the folders (every directory with an __init__.py under
a mapped folder), so a new subpackage needs no edit here.
"""
from pathlib import Path

from setuptools import setup

_FOLDERS = ("core", "compiler", "passes", "formats", "calibration", "runtime", "recipes")


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for folder in _FOLDERS:
        package_dir[f"inferc.{folder}"] = folder
        for init in sorted(Path(folder).rglob("__init__.py")):
            parts = init.parent.parts
            packages.append(".".join(("inferc", *parts)))
    return packages, package_dir


_pkgs, _dirs = _packages()
setup(packages=_pkgs, package_dir=_dirs)
