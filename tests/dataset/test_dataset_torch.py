"""The training loader: observation at t, action chunk t..t+C-1, padding past the episode end,
split selection, several datasets, statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_dataset import GOLDEN_ROOT, expected_state, golden_episode
from torch.utils.data import DataLoader

from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
from edgevla.dataset.lerobot.writer import DatasetSpec, LeRobotDatasetWriter
from edgevla.dataset.torch_dataset import ActionChunkDataset

LENGTHS = {0: 12, 1: 7, 2: 10}  # episode -> length
SPLITS = {0: "train", 1: "val", 2: "train"}
C = 5


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loader") / "ds"
    spec = DatasetSpec(episode_columns={"split": "string"})
    with LeRobotDatasetWriter.create(root, spec) as w:
        for e, n in LENGTHS.items():
            w.add_episode(golden_episode(e, n), metadata={"split": SPLITS[e]})
        w.finalize()
    return root


@pytest.fixture(scope="module")
def train(root: Path) -> ActionChunkDataset:
    return ActionChunkDataset(root, chunk_size=C, split="train")


def test_split_selects_episodes(root: Path, train: ActionChunkDataset) -> None:
    assert [e for _, e in train.episodes] == [0, 2]
    assert len(train) == LENGTHS[0] + LENGTHS[2]
    val = ActionChunkDataset(root, chunk_size=C, split="val")
    assert [e for _, e in val.episodes] == [1] and len(val) == LENGTHS[1]
    assert len(ActionChunkDataset(root, chunk_size=C, split=None)) == sum(LENGTHS.values())


def test_sample_inside_episode(train: ActionChunkDataset) -> None:
    item = train[3]  # episode 0, t = 3
    state = expected_state(0, LENGTHS[0])
    assert item["observation.state"].dtype == torch.float32
    np.testing.assert_array_equal(item["observation.state"].numpy(), state[3])
    assert item["action"].shape == (C, 6)
    np.testing.assert_array_equal(item["action"].numpy(), state[3 : 3 + C] + 0.5)
    assert item["action_is_pad"].dtype == torch.bool and not item["action_is_pad"].any()
    assert int(item["episode_index"]) == 0 and int(item["frame_index"]) == 3
    assert item["task"] == "Put the tea bag in the mug."


def test_chunk_padding_at_episode_end(train: ActionChunkDataset) -> None:
    n = LENGTHS[2]
    item = train[LENGTHS[0] + n - 2]  # episode 2, t = n - 2: two real actions, three pads
    state = expected_state(2, n)
    assert int(item["episode_index"]) == 2 and int(item["frame_index"]) == n - 2
    assert item["action_is_pad"].tolist() == [False, False, True, True, True]
    expected = np.concatenate([state[n - 2 :], np.repeat(state[-1:], 3, axis=0)]) + 0.5
    np.testing.assert_array_equal(item["action"].numpy(), expected)  # pads repeat the last action


def test_images_match_decoded_video(root: Path, train: ActionChunkDataset) -> None:
    item = train[LENGTHS[0] + 4]  # episode 2, t = 4
    decoded = LeRobotDatasetReader(root).video(2, "gripper")[4]
    img = item["observation.images.gripper"]
    assert img.shape == (3, 96, 128) and img.dtype == torch.float32
    assert img.min() >= 0.0 and img.max() <= 1.0
    torch.testing.assert_close(img, torch.from_numpy(decoded).permute(2, 0, 1).float() / 255)


def test_dataloader_batches(train: ActionChunkDataset) -> None:
    batch = next(iter(DataLoader(train, batch_size=4, shuffle=True)))
    assert batch["observation.state"].shape == (4, 6)
    assert batch["observation.images.top"].shape == (4, 3, 96, 128)
    assert batch["action"].shape == (4, C, 6) and batch["action_is_pad"].shape == (4, C)


def test_several_datasets_and_stats(root: Path) -> None:
    both = ActionChunkDataset([root, GOLDEN_ROOT], chunk_size=C, split=None)
    assert len(both) == sum(LENGTHS.values()) + 40
    assert [d for d, _ in both.episodes] == [0, 0, 0, 1, 1]
    assert int(both[len(both) - 1]["dataset_index"]) == 1
    stats = both.stats
    assert stats["observation.state"]["count"].tolist() == [sum(LENGTHS.values()) + 40]
    assert stats["observation.state"]["mean"].dtype == np.float32
    assert stats["observation.images.top"]["std"].shape == (3, 1, 1)
    single = ActionChunkDataset(root, chunk_size=C, split=None).stats
    assert single["action"]["max"].tolist() == (expected_state(2, LENGTHS[2])[-1] + 0.5).tolist()


def test_split_needs_a_split_column() -> None:
    with pytest.raises(ValueError, match="split=None"):
        ActionChunkDataset(GOLDEN_ROOT, split="train")
    assert len(ActionChunkDataset(GOLDEN_ROOT, split=None, cameras=["top"])) == 40


def test_frame_cache_serves_a_later_run_without_decoding(root: Path, tmp_path: Path) -> None:
    from edgevla.dataset.frame_cache import FrameCache, dataset_key

    plain = ActionChunkDataset(root, chunk_size=C, split=None)
    first_cache = FrameCache(tmp_path / "frames")
    first = ActionChunkDataset(root, chunk_size=C, split=None, frame_cache=first_cache)
    first.warm_up()
    assert first_cache.decoded == 3 * len(LENGTHS) and first_cache.hits == 0

    # A later run (new objects) reads every episode back and gets the same samples.
    later_cache = FrameCache(tmp_path / "frames")
    later = ActionChunkDataset(root, chunk_size=C, split=None, frame_cache=later_cache)
    for i in (0, 11, 12, len(later) - 1):
        for k in later.image_keys:
            assert torch.equal(later[i][k], plain[i][k])
    later.warm_up()
    assert later_cache.decoded == 0 and later_cache.hits == 3 * len(LENGTHS)
    # Served from the page cache (shared between runs), not copied into each process.
    mapped = later_cache.frames(LeRobotDatasetReader(root), 0, later.image_keys[0])
    assert isinstance(mapped, np.memmap) and mapped.shape[1] == 3

    # A partial file (a run killed while writing elsewhere) is decoded again and rewritten.
    entry = next(
        (tmp_path / "frames" / dataset_key(LeRobotDatasetReader(root))).glob("episode_000001_*.npy")
    )
    entry.write_bytes(entry.read_bytes()[:100])
    again = FrameCache(tmp_path / "frames")
    ds = ActionChunkDataset(root, chunk_size=C, split=None, frame_cache=again)
    ds.warm_up()
    assert again.decoded == 1 and again.hits == 3 * len(LENGTHS) - 1
    assert torch.equal(ds[12][ds.image_keys[0]], plain[12][ds.image_keys[0]])
