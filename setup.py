"""Build step: ship the top-level ``weights/`` inside the installed ``rbqe`` package.

``weights/`` stays the one source of the models (training and the model card write
there). A wheel built from this tree gets a copy at ``rbqe/_shipped/``, where
:func:`rbqe.weights.shipped_weights_dir` finds it with ``importlib.resources``. Everything
else about the build lives in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("rbqe_jpeg.safetensors", "MODEL_CARD.md")


class BuildPyWithWeights(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout's weights/ directly
            return
        target = Path(self.build_lib) / "rbqe" / "_shipped"
        for name in SHIPPED:
            source = ROOT / "weights" / name
            if source.is_file():
                self.mkpath(str(target))
                self.copy_file(str(source), str(target / name))


setup(cmdclass={"build_py": BuildPyWithWeights})
