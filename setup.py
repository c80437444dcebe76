"""Ship the Hydra configs with the package: `conf/` stays at the top of the repository (where
Hydra users look for it) and a built wheel or `pip install .` carries a copy as `seqbench/conf/`,
which `seqbench.cli.train.config_dir` finds. Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConfigs(build_py):
    """build_py, then conf/ copied into the built package as seqbench/conf/."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "seqbench" / "conf"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(__file__).resolve().parent / "conf", target)


setup(cmdclass={"build_py": BuildWithConfigs})
