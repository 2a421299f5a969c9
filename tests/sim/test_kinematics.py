import mujoco
import numpy as np
import pytest

from edgevla.sim.kinematics import GraspPose, UnreachableError, forward_tcp, solve_ik
from edgevla.sim.scene import SceneConfig, build_mjcf


@pytest.fixture(scope="module")
def model_data():
    m = mujoco.MjModel.from_xml_string(build_mjcf(SceneConfig()))
    return m, mujoco.MjData(m)


def test_closed_form_fk_matches_mujoco(model_data):
    m, d = model_data
    site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "tcp")
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(-1.5, 1.5, 5)
        d.qpos[:5] = q
        mujoco.mj_kinematics(m, d)
        np.testing.assert_allclose(forward_tcp(q), d.site_xpos[site], atol=1e-9)


@pytest.mark.parametrize(
    "pos, tilt, yaw",
    [
        ((0.25, 0.0, 0.011), 0.0, 0.3),
        ((0.2, 0.15, 0.05), 0.0, -1.0),
        ((0.35, -0.1, 0.016), 0.6, None),
    ],
)
def test_ik_reaches_pose(model_data, pos, tilt, yaw):
    m, d = model_data
    q = solve_ik(GraspPose(np.array(pos), tilt, yaw))
    d.qpos[:5] = q
    mujoco.mj_kinematics(m, d)
    site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "tcp")
    np.testing.assert_allclose(d.site_xpos[site], pos, atol=1e-9)
    gripper_axis = -d.site_xmat[site].reshape(3, 3)[:, 2]  # the gripper points along -z
    assert np.degrees(np.arccos(np.clip(-gripper_axis[2], -1, 1))) == pytest.approx(
        np.degrees(tilt), abs=1e-6
    )
    if yaw is not None:
        closing = d.site_xmat[site].reshape(3, 3)[:, 1]
        assert abs(closing[0] * np.sin(yaw) - closing[1] * np.cos(yaw)) < 1e-9


def test_unreachable_pose_raises():
    with pytest.raises(UnreachableError, match="out of reach"):
        solve_ik(GraspPose(np.array([0.6, 0.0, 0.01])))


def test_reachable_tilts_skip_the_unreachable_in_order():
    from edgevla.sim.kinematics import reachable_tilts

    far = np.array([0.36, 0.0, 0.02])  # out at the edge: reachable only tilted outward
    tilts = np.arange(0.0, 1.21, 0.05)
    found = list(reachable_tilts(far, tilts))
    assert found and found[0][0] > 0  # vertical does not reach, some tilt does
    assert [i for i, _ in found] == sorted(i for i, _ in found)
    for i, q in found:
        np.testing.assert_allclose(forward_tcp(q), far, atol=1e-9)
    assert list(reachable_tilts(np.array([0.9, 0.0, 0.1]), tilts)) == []
