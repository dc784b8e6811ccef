"""Ships the project's own inputs inside the package, so a wheel works from any directory.

pyproject.toml holds the metadata; this only extends the build: the suites, the embedded `base`
and `sft` models, the registry that names them and the SFT data are copied into
`harness/shipped/`, where `harness.paths` looks when the package is not a source checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("suites", "models.yaml", "models/base", "models/sft", "data/sft")


class BuildWithShippedInputs(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "harness" / "shipped"
        shutil.rmtree(target, ignore_errors=True)  # nothing left over from an earlier build
        for name in SHIPPED:
            source, dest = ROOT / name, target / name
            if source.is_dir():
                shutil.copytree(source, dest, dirs_exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)


setup(cmdclass={"build_py": BuildWithShippedInputs})
