"""Each scene knob changes what it should, and nothing else."""

import mujoco
import numpy as np
import pytest
from edgevla_runtime.features import image_key

from edgevla.sim.env import StartState, TeaBagMugEnv
from edgevla.sim.scene import CameraOffset, SceneConfig

START = StartState((0.25, 0.05), 0.3)


def _obs(scene: SceneConfig):
    env = TeaBagMugEnv(scene)
    obs, _ = env.reset(seed=0, options={"start_state": START})
    env.close()
    return obs, env


@pytest.fixture(scope="module")
def clean():
    return _obs(SceneConfig())[0]


def _diff(a, b):
    return np.abs(a.astype(int) - b.astype(int)).mean()


def test_camera_offset_moves_only_that_camera(clean):
    moved, _ = _obs(SceneConfig(camera_offsets=(CameraOffset("top", position=(0.02, 0.0, 0.0)),)))
    assert _diff(moved[image_key("top")], clean[image_key("top")]) > 0.5
    assert _diff(moved[image_key("left")], clean[image_key("left")]) == 0
    assert _diff(moved[image_key("gripper")], clean[image_key("gripper")]) == 0


def test_camera_rotation_changes_view(clean):
    turned, _ = _obs(
        SceneConfig(camera_offsets=(CameraOffset("left", rotation_deg=(0.0, 2.0, 0.0)),))
    )
    assert _diff(turned[image_key("left")], clean[image_key("left")]) > 0.5
    assert _diff(turned[image_key("top")], clean[image_key("top")]) == 0


def test_light_intensity_darkens_every_camera(clean):
    dim, _ = _obs(SceneConfig(light_intensity=0.6))
    for cam in ("top", "gripper", "left"):
        assert dim[image_key(cam)].mean() < clean[image_key(cam)].mean() - 3


def test_light_direction_changes_shading(clean):
    other, _ = _obs(SceneConfig(light_direction=(-1.0, 0.0, -0.3)))
    assert _diff(other[image_key("top")], clean[image_key("top")]) > 0.5


def test_table_colour_changes_contrast(clean):
    pale, _ = _obs(SceneConfig(table_rgba=(0.9, 0.9, 0.88, 1.0)))
    assert pale[image_key("top")].mean() > clean[image_key("top")].mean() + 50


def test_claw_friction_and_bag_mass_reach_the_model():
    _, env = _obs(SceneConfig(claw_friction=0.4, bag_mass=0.05))
    m = env.model
    pad = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "pad_left")
    bag = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "bag")
    assert m.geom_friction[pad, 0] == pytest.approx(0.4)
    assert m.body_mass[bag] == pytest.approx(0.05, rel=0.01)


def test_resolution_knob(clean):
    big, _ = _obs(SceneConfig(image_height=240, image_width=320))
    assert big[image_key("top")].shape == (240, 320, 3)
