"""Observations for parity and calibration drawn from a recorded dataset, and the datasets a
model cannot see through refused before any work."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from edgevla_runtime.features import STATE_KEY, image_key

from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
from edgevla.deploy.observations import dataset_observations
from edgevla.errors import BadInput


@dataclass
class Model:
    camera_names: tuple[str, ...] = ("top", "gripper", "left")
    image_hw: tuple[int, int] = (96, 128)


def test_frames_come_from_the_split_asked_for(tiny_recording) -> None:
    _, dataset = tiny_recording
    obs = dataset_observations(Model(), dataset, 5, seed=3, split="val")
    assert len(obs) == 5
    reader = LeRobotDatasetReader(dataset)
    val = [e["episode_index"] for e in reader.episodes if e["split"] == "val"]
    states = np.concatenate([reader.frames(i).state for i in val])
    for o in obs:
        assert o[image_key("top")].shape == (96, 128, 3) and o[image_key("top")].dtype == np.uint8
        assert (np.abs(states - o[STATE_KEY]).max(axis=1) == 0).any()  # a recorded val frame
    again = dataset_observations(Model(), dataset, 5, seed=3, split="val")
    assert all((a[STATE_KEY] == b[STATE_KEY]).all() for a, b in zip(obs, again, strict=True))


def test_a_dataset_the_model_cannot_see_through_is_refused(tiny_recording) -> None:
    _, dataset = tiny_recording
    with pytest.raises(BadInput, match=r"missing \['wrist'\]"):
        dataset_observations(Model(camera_names=("top", "wrist")), dataset, 2)
    with pytest.raises(BadInput, match="images are 96x128, the model expects 480x640"):
        dataset_observations(Model(image_hw=(480, 640)), dataset, 2)
    with pytest.raises(BadInput, match="no 'test' episodes"):
        dataset_observations(Model(), dataset, 2, split="test")
