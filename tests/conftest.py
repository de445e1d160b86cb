import pytest
import torch

from multidiff.core.gmm import example_mixture


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
