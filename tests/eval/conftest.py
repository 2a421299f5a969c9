import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_recording, tmp_path_factory):
    """A real ACT checkpoint (tiny preset, 2 steps) trained on the tiny recording."""
    from edgevla.train.config import TrainConfig
    from edgevla.train.loop import train
    from edgevla.train.run_folder import last_checkpoint

    _, ds = tiny_recording
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(policy="act", preset="tiny", dataset=(ds,), out=out, steps=2, batch_size=2,
                      save_freq=2, threads=1, val_batches=1))  # fmt: skip
    return last_checkpoint(out)[1]


@pytest.fixture(scope="session")
def tiny_smolvla_checkpoint(tiny_recording, tmp_path_factory):
    """A real SmolVLA checkpoint (tiny preset, 1 step) trained on the tiny recording."""
    from edgevla.train.config import TrainConfig
    from edgevla.train.loop import train
    from edgevla.train.run_folder import last_checkpoint

    _, ds = tiny_recording
    out = tmp_path_factory.mktemp("run_smolvla")
    train(TrainConfig(policy="smolvla", preset="tiny", dataset=(ds,), out=out, steps=1,
                      batch_size=2, save_freq=1, threads=1, val_batches=1))  # fmt: skip
    return last_checkpoint(out)[1]
