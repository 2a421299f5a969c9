"""`edgevla audit`: a clean recording passes with no false alarm, and every injected fault is
flagged by the check that owns it.

One small dataset is recorded for real (14 episodes). Faulty variants are built cheaply:
metadata faults rewrite a copy of it; image faults are written by `write_variant`, which rolls
the expert out through the same plan but keeps one frame in ten (so the arm has moved by
mid-episode, as the checks expect) and renders chosen episodes with another SceneConfig.
First frames are identical to the recorded ones, so the image checks see what they would see.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from edgevla_runtime.features import ACTION_KEY, STATE_KEY, image_key

from edgevla.cli import main
from edgevla.dataset.audit import AuditConfig, audit_dataset
from edgevla.dataset.lerobot.writer import DatasetSpec, LeRobotDatasetWriter
from edgevla.dataset.plan import PlanConfig, make_plan
from edgevla.dataset.record import (
    EPISODE_COLUMNS,
    RecordConfig,
    episode_metadata,
    record,
    scene_calibration,
)
from edgevla.sim.env import TeaBagMugEnv
from edgevla.sim.expert import ScriptedExpert
from edgevla.sim.scene import CameraOffset, SceneConfig

PLAN = PlanConfig(
    n_clusters=3,
    positions_per_cluster=4,
    recovery_per_cluster=1,
    val_clusters=(3,),
    test_per_cluster=1,
)
# 2 train clusters x (4 + 1 recovery) + 4 val = 14 episodes, 20% recovery: a minimum of 4 per
# cluster lets the clean set pass (the paper's 10 is the default).
CFG = AuditConfig(min_episodes_per_cluster=4)
EPISODES_PARQUET = "meta/episodes/chunk-000/file-000.parquet"
DATA_PARQUET = "data/chunk-000/file-000.parquet"
TOP_VIDEO = "videos/observation.images.top/chunk-000/file-000.mp4"


def audit(root: Path, out: Path, cfg: AuditConfig = CFG) -> dict[str, Any]:
    return audit_dataset(root, out, cfg).to_dict()


def flagged(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """{(check, item): finding} of every line that did not pass."""
    return {(f["check"], f["item"]): f for f in result["findings"] if f["status"] != "pass"}


def write_variant(
    root: Path,
    scenes: dict[int, SceneConfig] | None = None,
    plan_config: PlanConfig = PLAN,
    stride: int = 10,
    max_frames: int | None = None,
) -> Path:
    """A dataset of the plan's episodes, one expert tick in `stride` kept (images rendered
    only for those), episode i rendered with scenes[i] (default: the clean scene)."""
    scenes = scenes or {}
    plan = make_plan(plan_config)
    calibration = {
        "scene": scene_calibration(SceneConfig()),
        "plan_config": plan.to_dict()["config"],
    }
    spec = DatasetSpec(episode_columns=EPISODE_COLUMNS)
    envs: dict[SceneConfig, TeaBagMugEnv] = {}
    with LeRobotDatasetWriter.create(root, spec, calibration=calibration) as writer:
        for planned in plan.episodes:
            scene = scenes.get(planned.index, SceneConfig())
            env = envs.setdefault(scene, TeaBagMugEnv(scene, render_images=False))
            expert = ScriptedExpert(rng=np.random.default_rng(planned.seed))
            env.reset(seed=planned.seed, options={"start_state": planned.start_state()})
            expert.reset(env)
            states, actions = [], []
            images: dict[str, list[np.ndarray]] = {c: [] for c in scene.cameras}
            for t in range(env.max_episode_steps):
                action = expert.act(env)
                if t % stride == 0:
                    states.append(env.joint_positions())
                    actions.append(np.asarray(action, dtype=np.float32))
                    for cam, frames in images.items():
                        frames.append(env.render_camera(cam))
                _, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated or expert.done or len(states) == max_frames:
                    break
            frames = {STATE_KEY: np.asarray(states), ACTION_KEY: np.asarray(actions)}
            frames.update({image_key(c): np.stack(v) for c, v in images.items()})
            writer.add_episode(
                frames,
                episode_index=planned.index,
                metadata=episode_metadata(planned, plan_config.seed, planned.seed, 1),
            )  # fmt: skip
        writer.finalize()
    for env in envs.values():
        env.close()
    return root


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rewrite_parquet(path: Path, edit: Callable[[list[dict[str, Any]]], None]) -> None:
    table = pq.read_table(path)
    rows = table.to_pylist()
    edit(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


# ---------------------------------------------------------------------------- clean recording


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("audit")
    make_plan(PLAN).save(base / "plan.json")
    result = record(RecordConfig(plan=base / "plan.json", out=base / "clean"))
    assert result.complete and result.episodes_recorded == 14
    return base / "clean"


@pytest.fixture(scope="module")
def clean_result(clean, tmp_path_factory) -> dict[str, Any]:
    return audit(clean, tmp_path_factory.mktemp("audit-out"))


def test_clean_recording_passes_every_check(clean_result):
    assert clean_result["status"] != "fail"
    assert flagged(clean_result) == {}, json.dumps(list(flagged(clean_result).values()), indent=1)
    checks = {f["check"] for f in clean_result["findings"]}
    assert checks == {
        "coverage",
        "camera consistency",
        "lighting",
        "contrast",
        "integrity",
        "no cheating",
    }


def test_report_and_figures_are_written(clean_result):
    report = json.loads(Path(clean_result["report"]).read_text())
    assert report["status"] == "pass" and len(report["episodes"]) == 14
    assert (
        "top.consistency" in report["episodes"][0] and "top.brightness_rel" in report["episodes"][0]
    )
    names = {Path(p).name for p in clean_result["figures"]}
    assert {"consistency.png", "brightness.png", "clusters.png", "contrast.png"} <= names
    for p in clean_result["figures"]:
        assert Path(p).stat().st_size > 1000


def test_cli_positional_dataset_and_exit_status(clean, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["audit", str(clean), "--out", str(out), "--min-episodes-per-cluster", "4", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    assert result["status"] == "pass" and (out / "audit.json").is_file()
    # The paper's default (10 per cluster) fails this 14-episode recording: exit status 1.
    assert main(["audit", str(clean), "--out", str(out), "--json"]) == 1


def test_config_refuses_a_bad_band():
    with pytest.raises(ValueError, match="recovery share band"):
        AuditConfig(recovery_share_min=0.4, recovery_share_max=0.2)


# ---------------------------------------------------------------------------- metadata faults


def test_cluster_with_too_few_episodes(clean, tmp_path):
    root = copy_of(clean, tmp_path / "ds")

    def move_two_to_cluster_1(rows):
        for row in [r for r in rows if r["cluster_id"] == 2][:2]:
            row["cluster_id"] = 1

    rewrite_parquet(root / EPISODES_PARQUET, move_two_to_cluster_1)
    result = audit(root, tmp_path / "out")
    bad = flagged(result)
    assert set(bad) == {("coverage", "episodes per cluster")}
    assert bad[("coverage", "episodes per cluster")]["status"] == "fail"
    assert "cluster 2 has 3" in bad[("coverage", "episodes per cluster")]["detail"]
    assert result["status"] == "fail"


def test_validation_episode_in_training_split(clean, tmp_path):
    root = copy_of(clean, tmp_path / "ds")

    def leak(rows):
        next(r for r in rows if r["split"] == "val")["split"] = "train"

    rewrite_parquet(root / EPISODES_PARQUET, leak)
    bad = flagged(audit(root, tmp_path / "out"))
    assert set(bad) == {("coverage", "val clusters held out")}
    assert bad[("coverage", "val clusters held out")]["episodes"] == [10]


def test_one_orientation_only(clean, tmp_path):
    root = copy_of(clean, tmp_path / "ds")
    rewrite_parquet(
        root / EPISODES_PARQUET, lambda rows: [r.update(orientation="horizontal") for r in rows]
    )
    assert set(flagged(audit(root, tmp_path / "out"))) == {("coverage", "orientations")}


@pytest.mark.slow
def test_recovery_share_of_5_percent(tmp_path):
    # 2 clusters x (19 + 1 recovery) = 20 training episodes, one recovery start: 5%.
    plan = PlanConfig(
        n_clusters=2, positions_per_cluster=19, recovery_per_cluster=1, val_clusters=(2,)
    )
    root = write_variant(tmp_path / "ds", plan_config=plan, stride=1, max_frames=2)
    bad = flagged(audit(root, tmp_path / "out"))
    assert bad[("coverage", "recovery share")]["status"] == "fail"
    assert bad[("coverage", "recovery share")]["value"] == pytest.approx(1 / 20)
    assert not [k for k, f in bad.items() if f["status"] == "fail" and k[0] != "coverage"]


# ---------------------------------------------------------------------------- integrity faults


def test_truncated_video_is_reported_not_raised(clean, tmp_path):
    root = copy_of(clean, tmp_path / "ds")
    video = root / TOP_VIDEO
    video.write_bytes(video.read_bytes()[: int(video.stat().st_size * 0.6)])
    result = audit(root, tmp_path / "out")
    bad = flagged(result)
    frames = bad[("integrity", "video frames = rows")]
    assert frames["status"] == "fail" and result["status"] == "fail"
    assert frames["episodes"][-1] == 13 and 0 not in frames["episodes"]  # the tail is gone
    # The other checks still ran, on the episodes that are intact.
    assert ("camera consistency", "camera top") not in bad
    assert {f["check"] for f in result["findings"]} >= {"coverage", "lighting", "no cheating"}


def test_nan_out_of_limit_and_timestamp_gap(clean, tmp_path):
    root = copy_of(clean, tmp_path / "ds")

    def damage(rows):
        ep = lambda e: [r for r in rows if r["episode_index"] == e]  # noqa: E731
        ep(1)[5]["observation.state"][2] = float("nan")
        ep(2)[7]["observation.state"][2] = 2.5  # elbow_flex limit is 1.69 rad
        for r in ep(5)[40:]:
            r["timestamp"] += 1 / 30  # a dropped frame

    rewrite_parquet(root / DATA_PARQUET, damage)
    bad = flagged(audit(root, tmp_path / "out"))
    assert bad[("integrity", "finite values")]["episodes"] == [1]
    assert bad[("integrity", "joint limits")]["episodes"] == [2]
    assert "elbow_flex" in bad[("integrity", "joint limits")]["detail"]
    assert bad[("integrity", "timestamps")]["episodes"] == [5]


def test_privileged_feature_is_cheating(clean, tmp_path):
    root = copy_of(clean, tmp_path / "ds")
    key = "observation.environment_state"  # LeRobot's name for object poses
    info = json.loads((root / "meta/info.json").read_text())
    info["features"][key] = {"dtype": "float32", "shape": [3], "names": ["x", "y", "yaw"]}
    (root / "meta/info.json").write_text(json.dumps(info))
    table = pq.read_table(root / DATA_PARQUET)
    column = pa.array([[0.1, 0.2, 0.3]] * table.num_rows, pa.list_(pa.float32(), 3))
    pq.write_table(table.append_column(key, column), root / DATA_PARQUET)
    bad = flagged(audit(root, tmp_path / "out"))
    assert set(bad) == {("no cheating", "policy inputs")}
    assert key in bad[("no cheating", "policy inputs")]["detail"]


def test_dataset_the_reader_refuses_is_still_audited(clean, tmp_path):
    """An extra camera the robot will not have: the reader refuses the dataset (no video
    columns for it); the audit says so, and still judges what it can read."""
    root = copy_of(clean, tmp_path / "ds")
    info = json.loads((root / "meta/info.json").read_text())
    info["features"]["observation.images.overhead"] = dict(
        info["features"]["observation.images.top"]
    )
    (root / "meta/info.json").write_text(json.dumps(info))
    result = audit(root, tmp_path / "out")
    bad = flagged(result)
    assert bad[("integrity", "dataset opens")]["status"] == "fail"
    assert "observation.images.overhead" in bad[("no cheating", "policy inputs")]["detail"]
    assert ("coverage", "episodes per cluster") not in bad  # read from the episodes table
    assert result["status"] == "fail"


# ---------------------------------------------------------------------------- image faults

TOP_MOVED_2CM = SceneConfig(camera_offsets=(CameraOffset("top", position=(0.02, 0.0, 0.0)),))
TOP_TURNED_2DEG = SceneConfig(camera_offsets=(CameraOffset("top", rotation_deg=(2.0, 0.0, 0.0)),))
GRIPPER_TURNED_2DEG = SceneConfig(
    camera_offsets=(CameraOffset("gripper", rotation_deg=(0.0, 2.0, 0.0)),)
)
DIM = SceneConfig(light_intensity=0.6)
BAG_COLOURED_TABLE = SceneConfig(table_rgba=(0.85, 0.5, 0.12, 1.0))  # the bag is (1, .55, .05)
WHITE_TABLE = SceneConfig(table_rgba=(0.92, 0.92, 0.90, 1.0))  # the arm is (.92, .92, .90)

IMAGE_FAULTS: dict[str, tuple[dict[int, SceneConfig], tuple[str, str], str, list[int] | None]] = {
    # name: (scenes per episode, (check, item) expected, status, episodes expected)
    "top camera moved 2 cm": (
        {3: TOP_MOVED_2CM},
        ("camera consistency", "camera top"),
        "fail",
        [3],
    ),
    "top camera turned 2 deg": (
        {8: TOP_TURNED_2DEG},
        ("camera consistency", "camera top"),
        "fail",
        [8],
    ),
    "top camera turned in a recovery start": (
        {4: TOP_TURNED_2DEG},
        ("camera consistency", "camera top"),
        "fail",
        [4],
    ),
    "gripper camera turned 2 deg": (
        {6: GRIPPER_TURNED_2DEG},
        ("camera consistency", "camera gripper"),
        "fail",
        [6],
    ),
    "light -40% in 3 episodes": (
        {i: DIM for i in (2, 7, 11)},
        ("lighting", "brightness"),
        "fail",
        [2, 7, 11],
    ),
    "table the colour of the bag": (
        {i: BAG_COLOURED_TABLE for i in range(14)},
        ("contrast", "object vs background (top)"),
        "warn",
        None,
    ),
    "white arm on a white table": (
        {i: WHITE_TABLE for i in range(14)},
        ("contrast", "arm vs background (top)"),
        "warn",
        None,
    ),
}


@pytest.mark.slow
def test_variant_builder_alone_raises_no_alarm(tmp_path):
    """The faulty variants below differ from this one only by their fault."""
    assert flagged(audit(write_variant(tmp_path / "ds"), tmp_path / "out")) == {}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(IMAGE_FAULTS))
def test_image_fault_is_flagged_by_its_check(fault, tmp_path):
    scenes, key, status, episodes = IMAGE_FAULTS[fault]
    result = audit(write_variant(tmp_path / "ds", scenes), tmp_path / "out")
    bad = flagged(result)
    assert key in bad, json.dumps(result["findings"], indent=1)
    assert bad[key]["status"] == status
    if episodes is not None:
        assert bad[key]["episodes"] == episodes
    # No other check fails because of it (a dim episode may also drift in histogram: a warning).
    assert {k for k, f in bad.items() if f["status"] == "fail"} <= {key}
    assert (result["status"] == "fail") == (status == "fail")


# ---------------------------------------------------------------------------- never crashes


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_text('{"codebase_version": "v3.0", "fps": 30, "feat'),
        lambda p: p.write_bytes(b"\xff\xfe\x00garbage"),
        lambda p: p.write_text("[1, 2, 3]"),
        lambda p: p.unlink(),
    ],
    ids=["truncated", "not utf-8", "not an object", "missing"],
)
def test_unreadable_info_json_is_a_failing_finding_with_a_report(clean, tmp_path, capsys, damage):
    root = copy_of(clean, tmp_path / "ds")
    damage(root / "meta/info.json")
    result = audit(root, tmp_path / "out")
    bad = flagged(result)
    assert bad[("integrity", "dataset opens")]["status"] == "fail"
    assert "info.json" in bad[("integrity", "dataset opens")]["detail"]
    assert result["status"] == "fail"
    report = json.loads(Path(result["report"]).read_text())
    lines = lambda r: [(f["check"], f["item"], f["status"]) for f in r["findings"]]  # noqa: E731
    assert report["status"] == "fail" and lines(report) == lines(result)
    assert ("coverage", "episodes per cluster") not in bad  # the episodes table still read
    argv = ["audit", str(root), "--out", str(tmp_path / "cli"), "--json"]
    argv += ["--min-episodes-per-cluster", "4"]
    assert main(argv) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "fail"


def test_a_missing_dataset_folder_is_bad_input(tmp_path):
    assert main(["audit", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2


def edit_top_feature(root: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    edit(info["features"]["observation.images.top"])
    (root / "meta/info.json").write_text(json.dumps(info))


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda f: f.update(shape=[64, 128, 3]), "is 96x128, info.json says 64x128"),
        (
            lambda f: f["info"].update({"video.fps": 15}),
            "runs at 30 fps, info.json video.fps says 15",
        ),
        (lambda f: f["info"].update({"video.codec": "h264"}), "is av1, info.json says h264"),
    ],
    ids=["size", "fps", "codec"],
)
def test_info_json_that_disagrees_with_the_videos_fails(clean, tmp_path, edit, expected):
    root = copy_of(clean, tmp_path / "ds")
    edit_top_feature(root, edit)
    result = audit(root, tmp_path / "out")
    bad = flagged(result)
    finding = bad[("integrity", "video metadata")]
    assert finding["status"] == "fail" and expected in finding["detail"], finding["detail"]
    assert TOP_VIDEO in finding["detail"]
    assert result["status"] == "fail"
