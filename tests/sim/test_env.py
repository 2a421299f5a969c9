import math

import gymnasium as gym
import numpy as np
import pytest
from edgevla_runtime.features import ACTION_DIM, CAMERA_NAMES, STATE_KEY, image_key

from edgevla.sim.env import StartState, TeaBagMugEnv, register
from edgevla.sim.scene import BAG_HALF_SIZE, JOINT_LIMITS, MUG_POS, SceneConfig


@pytest.fixture(scope="module")
def env():
    e = TeaBagMugEnv()
    yield e
    e.close()


def test_observation_contract(env):
    obs, info = env.reset(seed=1)
    assert set(obs) == {STATE_KEY} | {image_key(c) for c in CAMERA_NAMES}
    assert obs[STATE_KEY].shape == (6,) and obs[STATE_KEY].dtype == np.float32
    for cam in CAMERA_NAMES:
        img = obs[image_key(cam)]
        assert img.shape == (96, 128, 3) and img.dtype == np.uint8
        assert img.std() > 5, f"{cam} image is blank"
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (ACTION_DIM,)
    assert info["success"] is False


def test_no_privileged_state_in_observation(env):
    obs, _ = env.reset(seed=2)
    bag = env.privileged_state()["bag_pos"]
    # Only joint positions and images: nothing carries the bag's coordinates.
    assert set(obs) == {STATE_KEY} | {image_key(c) for c in CAMERA_NAMES}
    assert not np.any(np.isin(np.round(obs[STATE_KEY], 5), np.round(bag, 5)))


def test_same_seed_and_actions_give_same_trajectory():
    rng = np.random.default_rng(0)
    actions = None
    runs = []
    for _ in range(2):
        e = TeaBagMugEnv()
        obs, _ = e.reset(seed=7)
        if actions is None:
            actions = obs[STATE_KEY] + rng.normal(0, 0.05, size=(20, 6)).astype(np.float32)
        states, images = [], []
        for a in actions:
            obs, *_ = e.step(a)
            states.append(obs[STATE_KEY])
            images.append(obs[image_key("top")])
        runs.append((np.array(states), np.array(images), e.privileged_state()["bag_pos"]))
        e.close()
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    np.testing.assert_array_equal(runs[0][2], runs[1][2])


def test_different_seeds_give_different_starts(env):
    env.reset(seed=1)
    a = env.start_state
    env.reset(seed=2)
    assert env.start_state != a


@pytest.mark.parametrize(
    "action, match",
    [
        (np.zeros(5), r"shape \(6,\)"),
        (np.zeros((2, 6)), r"shape \(6,\)"),
        (np.array([0, 0, np.nan, 0, 0, 0]), "elbow_flex"),
        (np.array([0, 0, 0, 0, 0, np.inf]), "gripper"),
    ],
)
def test_bad_actions_are_refused(env, action, match):
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)


def test_out_of_range_targets_are_clipped_to_joint_limits(env):
    env.reset(seed=0)
    action = JOINT_LIMITS[:, 1] + 1.0
    _, _, _, _, info = env.step(action)
    assert info["action_clipped"] is True
    np.testing.assert_allclose(env.data.ctrl, JOINT_LIMITS[:, 1])
    _, _, _, _, info = env.step(env.joint_positions())
    assert info["action_clipped"] is False


def test_bad_configuration_fails_at_construction():
    with pytest.raises(ValueError, match="allowed: \\['top', 'gripper', 'left'\\]"):
        SceneConfig(cameras=("top", "front"))
    with pytest.raises(ValueError, match="height must be in \\[64, 480\\]"):
        SceneConfig(image_height=32)
    with pytest.raises(ValueError, match="width must be in"):
        SceneConfig(image_width=2000)


def test_start_outside_workspace_is_refused(env):
    with pytest.raises(ValueError, match="outside the workspace"):
        env.reset(options={"start_state": StartState((-0.3, 0.0), 0.0)})


def _settle(env, steps=45):
    hold = env.joint_positions()
    info = {}
    for _ in range(steps):
        _, _, terminated, _, info = env.step(hold)
        if terminated:
            break
    return info


def _place_bag(env, x, y, z):
    adr = env._bag_qadr
    env.data.qpos[adr : adr + 3] = (x, y, z)
    env.data.qpos[adr + 3 : adr + 7] = (1, 0, 0, 0)
    env.data.qvel[:] = 0


def test_success_when_bag_dropped_in_mug(env):
    env.reset(seed=0, options={"start_state": StartState((0.25, 0.1), 0.0)})
    _place_bag(env, MUG_POS[0], MUG_POS[1], 0.05)
    info = _settle(env)
    assert env.bag_in_mug()
    assert info["success"] is True


def test_no_success_when_bag_next_to_mug(env):
    env.reset(seed=0, options={"start_state": StartState((0.25, 0.1), 0.0)})
    _place_bag(env, MUG_POS[0] + 0.11, MUG_POS[1], BAG_HALF_SIZE[2] + 0.001)
    info = _settle(env)
    assert not env.bag_in_mug()
    assert info["success"] is False


def test_episode_truncates_at_time_limit():
    e = TeaBagMugEnv(max_episode_s=0.2, render_images=False)
    e.reset(seed=0)
    truncated = False
    for _ in range(6):
        _, _, terminated, truncated, _ = e.step(e.joint_positions())
    assert truncated and not terminated


def test_gymnasium_registration():
    register()
    e = gym.make("edgevla/TeaBagMug-v0", render_images=False)
    obs, _ = e.reset(seed=0)
    assert obs[STATE_KEY].shape == (6,)
    e.close()


def test_fps_sets_exact_control_period():
    for fps in (30, 60):
        cfg = SceneConfig(fps=fps)
        assert math.isclose(cfg.timestep * cfg.n_substeps, 1 / fps)
        assert cfg.timestep <= cfg.physics_dt


def test_pose_scene_places_arm_and_bag_without_simulating(env):
    from edgevla.sim.kinematics import forward_tcp

    env.reset(seed=3)
    q = np.array([0.4, -0.3, 0.6, 0.9, 0.2, 0.5])
    bag = np.array([0.22, 0.05, 0.03])  # in the air: posed, so it does not fall
    obs = env.pose_scene(q, bag, 0.7)
    truth = env.privileged_state()
    np.testing.assert_allclose(truth["bag_pos"], bag)
    np.testing.assert_allclose(truth["joint_pos"], q)
    np.testing.assert_allclose(truth["tcp_pos"], forward_tcp(q), atol=1e-6)
    assert set(obs) == {STATE_KEY, *(image_key(c) for c in CAMERA_NAMES)}
    with pytest.raises(ValueError, match="NaN"):
        env.pose_scene(q, (0.2, math.nan, 0.01), 0.0)
    with pytest.raises(ValueError, match="bag_pos"):
        env.pose_scene(q, (0.2, 0.0), 0.0)
    obs, _ = env.reset(seed=3)  # an episode after a posed scene starts as usual
    assert env.privileged_state()["bag_pos"][2] < 0.01
