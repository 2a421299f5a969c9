"""Our writer against LeRobot's own output: same files, same info.json, same parquet schemas,
statistics equal within the documented tolerances, same video stream properties; plus the
writer's contract (extra columns, calibration, overwrite, validation, append after finalize)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from synthetic_dataset import GOLDEN_ROOT, check_video, expected_state, golden_episode

from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
from edgevla.dataset.lerobot.writer import DatasetSpec, LeRobotDatasetWriter, MissingEpisodesError
from edgevla.dataset.video import VideoSettings

GOLDEN = Path(GOLDEN_ROOT)
COLUMNS = {
    "split": "string",
    "cluster_id": "int64",
    "start_pose": "list<float64>",
    "is_recovery": "bool",
    "plan_seed": "int64",
}


def write(root: Path, n: int = 2, spec: DatasetSpec | None = None, **create: object) -> Path:
    with LeRobotDatasetWriter.create(root, spec, **create) as w:
        for e in range(n):
            meta = None
            if w.spec.episode_columns:
                meta = {
                    "split": "val" if e == 1 else "train",
                    "cluster_id": e % 2,
                    "start_pose": np.arange(6) * 0.1 + e,
                    "is_recovery": e == 2,
                    "plan_seed": 100 + e,
                }
            w.add_episode(golden_episode(e), metadata=meta)
        w.finalize()
    return root


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("writer") / "ds")


def rel_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_same_files_as_lerobot(ours: Path) -> None:
    assert rel_files(ours) == rel_files(GOLDEN) | {"meta/edgevla.json"}


def test_info_json_identical(ours: Path) -> None:
    ours_info = json.loads((ours / "meta/info.json").read_text())
    golden_info = json.loads((GOLDEN / "meta/info.json").read_text())
    assert ours_info == golden_info
    assert list(ours_info) == list(golden_info)  # key order too


@pytest.mark.parametrize(
    "rel",
    [
        "data/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/tasks.parquet",
    ],
)
def test_parquet_schema_identical(ours: Path, rel: str) -> None:
    a, b = pq.read_schema(ours / rel), pq.read_schema(GOLDEN / rel)
    assert a.remove_metadata() == b.remove_metadata()
    assert set(a.metadata or {}) == set(b.metadata or {})
    if rel.startswith("data/"):  # HF datasets feature types (LeRobot's loader reads them)
        hf = [json.loads(s.metadata[b"huggingface"])["info"]["features"] for s in (a, b)]
        assert hf[0] == hf[1]
    if rel == "meta/tasks.parquet":  # pandas index = task, how LeRobot looks tasks up
        idx = [json.loads(s.metadata[b"pandas"])["index_columns"] for s in (a, b)]
        assert idx[0] == idx[1] == ["task"]
    assert (
        pq.read_metadata(ours / rel).num_row_groups == pq.read_metadata(GOLDEN / rel).num_row_groups
    )


def assert_stats_close(ours: dict, golden: dict, where: str) -> None:
    """Documented differences (stats.py): float64 vs LeRobot's float32 accumulation (image std
    ~4e-4 apart) and exact quantiles vs a 5000-bin histogram (one bin = range / 5000)."""
    assert set(ours) == set(golden), where
    for name, g in golden.items():
        a, b = np.asarray(ours[name], float), np.asarray(g, float)
        assert a.shape == b.shape, (where, name)
        span = float(np.max(golden["max"]) - np.min(golden["min"]))
        tol = 1e-6 + (span / 2000 if name.startswith("q") else 0) + (1e-3 if name == "std" else 0)
        np.testing.assert_allclose(a, b, atol=tol, rtol=1e-6, err_msg=f"{where}/{name}")


def test_stats_json_matches(ours: Path) -> None:
    a = json.loads((ours / "meta/stats.json").read_text())
    b = json.loads((GOLDEN / "meta/stats.json").read_text())
    assert set(a) == set(b)
    for feature in b:
        assert_stats_close(a[feature], b[feature], feature)


def test_episodes_table_matches(ours: Path) -> None:
    rel = "meta/episodes/chunk-000/file-000.parquet"
    a, b = pq.read_table(ours / rel).to_pylist(), pq.read_table(GOLDEN / rel).to_pylist()
    for ra, rb in zip(a, b, strict=True):
        assert {k: v for k, v in ra.items() if not k.startswith("stats/")} == {
            k: v for k, v in rb.items() if not k.startswith("stats/")
        }
        features = {k.split("/")[1] for k in rb if k.startswith("stats/")}
        for f in features:
            prefix = f"stats/{f}/"
            sa = {k[len(prefix) :]: v for k, v in ra.items() if k.startswith(prefix)}
            sb = {k[len(prefix) :]: v for k, v in rb.items() if k.startswith(prefix)}
            assert_stats_close(sa, sb, f"episode {rb['episode_index']} {f}")


def test_data_values_identical(ours: Path) -> None:
    rel = "data/chunk-000/file-000.parquet"
    assert pq.read_table(ours / rel).equals(pq.read_table(GOLDEN / rel))


def test_video_streams_like_lerobot(ours: Path) -> None:
    for cam in ("top", "gripper", "left"):
        rel = f"videos/observation.images.{cam}/chunk-000/file-000.mp4"
        facts = []
        for root in (ours, GOLDEN):
            with av.open(str(root / rel)) as c:
                s = c.streams.video[0]
                pts = [f.pts for f in c.decode(s)]
                facts.append(
                    (
                        s.codec_context.codec.canonical_name,
                        s.codec_context.pix_fmt,
                        Fraction(s.time_base),
                        s.frames,
                        s.average_rate,
                        (s.width, s.height),
                        pts,
                    )
                )
        assert facts[0] == facts[1]
        for root in (ours, GOLDEN):  # index (moov) before payload (mdat): streamable, like LeRobot
            head = (root / rel).read_bytes()
            assert head.find(b"moov") < head.find(b"mdat")


def test_roundtrip(ours: Path) -> None:
    r = LeRobotDatasetReader(ours)
    for e in range(2):
        np.testing.assert_array_equal(r.frames(e).state, expected_state(e, 20))
        np.testing.assert_array_equal(r.frames(e).action, expected_state(e, 20) + 0.5)
        for k, cam in enumerate(r.cameras):
            check_video(r.video(e, cam), k)


def test_h264_roundtrip(tmp_path: Path) -> None:
    root = write(tmp_path / "ds", n=2, spec=DatasetSpec(video=VideoSettings.h264()))
    r = LeRobotDatasetReader(root)
    assert r.features["observation.images.top"]["info"]["video.codec"] == "h264"
    for e in range(2):
        for k, cam in enumerate(r.cameras):
            check_video(r.video(e, cam), k)


def test_extra_columns_and_calibration(tmp_path: Path) -> None:
    calibration = {"scene": "tea", "mug_xy": [0.1, 0.2], "seed": 3}
    root = write(
        tmp_path / "ds", n=3, spec=DatasetSpec(episode_columns=COLUMNS), calibration=calibration
    )
    r = LeRobotDatasetReader(root)
    assert r.calibration == calibration
    assert r.extra_episode_columns == list(COLUMNS)
    eps = r.episodes
    assert [e["split"] for e in eps] == ["train", "val", "train"]
    assert [e["is_recovery"] for e in eps] == [False, False, True]
    assert eps[2]["start_pose"] == pytest.approx(list(np.arange(6) * 0.1 + 2))
    # What LeRobot's load_episodes keeps (every non-"stats/" column) includes ours, typed.
    table = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet")
    kept = [c for c in table.column_names if not c.startswith("stats/")]
    assert set(COLUMNS) <= set(kept)
    assert table.schema.field("start_pose").type == pa.list_(pa.float64())
    assert table.schema.field("is_recovery").type == pa.bool_()
    # LeRobot's columns come first, unchanged; ours are appended after them.
    golden = pq.read_schema(GOLDEN / "meta/episodes/chunk-000/file-000.parquet")
    assert table.schema.names == golden.names + list(COLUMNS)
    writer, done = LeRobotDatasetWriter.open_for_resume(root)
    assert done == {0, 1, 2} and writer.calibration == calibration
    writer.close()


def test_refuses_to_overwrite(tmp_path: Path, ours: Path) -> None:
    root = write(tmp_path / "ds", n=1)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        LeRobotDatasetWriter.create(root)
    LeRobotDatasetWriter.create(root, overwrite=True).close()
    assert LeRobotDatasetWriter.open_for_resume(root)[1] == set()
    stranger = tmp_path / "home"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="does not look like a dataset"):
        LeRobotDatasetWriter.create(stranger, overwrite=True)
    assert (stranger / "notes.txt").exists()


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    w = LeRobotDatasetWriter.create(tmp_path / "ds")
    with pytest.raises(RuntimeError, match="another writer"):
        LeRobotDatasetWriter.open_for_resume(tmp_path / "ds")
    w.close()


def test_add_episode_validation(tmp_path: Path) -> None:
    with LeRobotDatasetWriter.create(
        tmp_path / "ds", DatasetSpec(episode_columns={"split": "string"})
    ) as w:
        good = golden_episode(0, 4)
        with pytest.raises(ValueError, match="missing"):
            w.add_episode(
                {k: v for k, v in good.items() if k != "action"}, metadata={"split": "train"}
            )
        with pytest.raises(ValueError, match="uint8"):
            bad = dict(good, **{"observation.images.top": good["observation.images.top"] / 255.0})
            w.add_episode(bad, metadata={"split": "train"})
        with pytest.raises(ValueError, match="same non-zero number of frames"):
            w.add_episode(dict(good, action=good["action"][:3]), metadata={"split": "train"})
        with pytest.raises(ValueError, match="NaN"):
            w.add_episode(dict(good, action=good["action"] * np.nan), metadata={"split": "train"})
        with pytest.raises(ValueError, match="declared episode columns"):
            w.add_episode(good, metadata={"splt": "train"})
        with pytest.raises(ValueError, match="declared string"):
            w.add_episode(good, metadata={"split": 1})
        assert w.add_episode(good, metadata={"split": "train"}) == 0
        with pytest.raises(ValueError, match="already recorded"):
            w.add_episode(good, episode_index=0, metadata={"split": "train"})
        assert w.completed_episodes == {0}
        assert not list((tmp_path / "ds/.edgevla_staging/tmp").iterdir())  # nothing left behind


def test_finalize_refuses_gaps_and_is_idempotent(tmp_path: Path) -> None:
    with LeRobotDatasetWriter.create(tmp_path / "ds") as w:
        w.add_episode(golden_episode(0, 5), episode_index=0)
        w.add_episode(golden_episode(2, 5), episode_index=2)
        with pytest.raises(MissingEpisodesError, match=r"episodes \[1\] are missing") as err:
            w.finalize()
        assert err.value.missing == [1]
        w.add_episode(golden_episode(1, 5), episode_index=1)
        w.finalize()
        before = {p: (tmp_path / "ds" / p).read_bytes() for p in rel_files(tmp_path / "ds")}
        w.finalize()  # nothing staged: no change
        assert before == {p: (tmp_path / "ds" / p).read_bytes() for p in rel_files(tmp_path / "ds")}


def test_resume_after_finalize_appends_new_files(tmp_path: Path) -> None:
    root = write(tmp_path / "ds", n=2)
    writer, done = LeRobotDatasetWriter.open_for_resume(root)
    with writer:
        assert done == {0, 1}
        writer.add_episode(golden_episode(2, 10))
        writer.finalize()
    assert {
        "data/chunk-000/file-001.parquet",
        "meta/episodes/chunk-000/file-001.parquet",
    } <= rel_files(root)
    r = LeRobotDatasetReader(root)
    assert r.num_episodes == 3 and r.num_frames == 50
    assert r.episodes[2]["videos/observation.images.top/file_index"] == 1
    assert r.episodes[2]["videos/observation.images.top/from_timestamp"] == 0.0
    np.testing.assert_array_equal(r.frames(2).state, expected_state(2, 10))
    np.testing.assert_array_equal(r.frames(2).index, np.arange(40, 50))
    check_video(r.video(2, "left"), 2)
    assert r.stats["observation.state"]["count"].tolist() == [50]
    assert r.stats["observation.state"]["max"].tolist() == expected_state(2, 10)[-1].tolist()
