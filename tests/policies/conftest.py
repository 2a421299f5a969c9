import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The CI machine has 2 shared cores; one thread keeps timings stable and neighbours happy."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
