"""Recording and loading speed of edgevla's LeRobot v3 dataset code at 96x128.

    .venv/bin/python benchmarks/bench_loader.py                 # synthetic dataset in a temp dir
    .venv/bin/python benchmarks/bench_loader.py --root DATASET  # an existing dataset (all splits)

Prints the encoder's frames/s (add_episode, three cameras), finalize time, the loader's warm-up
(decode) time and samples/s after warm-up, item by item and through a DataLoader (batch 64).
Figures for the README; never a CI gate.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from edgevla_runtime.features import ACTION_KEY, CAMERA_NAMES, STATE_KEY, image_key
from torch.utils.data import DataLoader

from edgevla.dataset.lerobot.writer import DatasetSpec, LeRobotDatasetWriter
from edgevla.dataset.torch_dataset import ActionChunkDataset
from edgevla.dataset.video import VideoSettings


def synthetic_episode(rng: np.random.Generator, length: int, hw: tuple[int, int]) -> dict:
    """Frames with texture and motion (a moving blob over a noisy gradient), so the encoder
    does realistic work rather than compressing flat colour."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (h + w)], -1)
    state = np.cumsum(rng.normal(0, 0.01, (length, 6)), axis=0).astype(np.float32)
    frames = {STATE_KEY: state, ACTION_KEY: state + 0.01}
    for k, cam in enumerate(CAMERA_NAMES):
        video = np.empty((length, h, w, 3), np.uint8)
        for t in range(length):
            cy, cx = h / 2 + h / 3 * np.sin(t / 20 + k), w / 2 + w / 3 * np.cos(t / 25 + k)
            blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < (h / 8) ** 2)[..., None] * 120
            noise = rng.integers(0, 12, (h, w, 3))
            video[t] = np.clip(base + blob + noise, 0, 255)
        frames[image_key(cam)] = video
    return frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", type=Path, help="existing dataset (skips the recording benchmark)")
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--length", type=int, default=300)
    p.add_argument("--chunk-size", type=int, default=100)
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--codec", choices=["av1", "h264"], default="av1")
    args = p.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            root = Path(tmp) / "bench"
            video = VideoSettings.av1() if args.codec == "av1" else VideoSettings.h264()
            spec = DatasetSpec(video=video)
            rng = np.random.default_rng(0)
            episodes = [
                synthetic_episode(rng, args.length, spec.image_hw) for _ in range(args.episodes)
            ]
            with LeRobotDatasetWriter.create(root, spec) as writer:
                t0 = time.perf_counter()
                for ep in episodes:
                    writer.add_episode(ep)
                dt = time.perf_counter() - t0
                n = args.episodes * args.length
                print(
                    f"record  {video.encoder} g={video.g} crf={video.crf} preset={video.preset}: "
                    f"{n / dt:,.0f} steps/s ({3 * n / dt:,.0f} camera frames/s, incl. stats+fsync)"
                )
                t0 = time.perf_counter()
                writer.finalize()
                print(f"finalize {args.episodes} episodes: {time.perf_counter() - t0:.2f} s")
        split = None
        ds = ActionChunkDataset(root, chunk_size=args.chunk_size, split=split)
        t0 = time.perf_counter()
        ds.warm_up()
        warm = time.perf_counter() - t0
        print(
            f"loader  {len(ds)} samples, warm-up (decode) {warm:.2f} s "
            f"({len(ds) * len(ds.cameras) / warm:,.0f} frames/s), cache {ds.cache_nbytes_estimate / 1e6:.0f} MB"
        )
        order = np.random.default_rng(1).integers(0, len(ds), args.samples)
        t0 = time.perf_counter()
        for i in order:
            ds[int(i)]
        dt = time.perf_counter() - t0
        print(f"loader  item by item: {args.samples / dt:,.0f} samples/s")
        loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=0)
        t0, seen = time.perf_counter(), 0
        for batch in loader:
            seen += len(batch[STATE_KEY])
            if seen >= args.samples:
                break
        dt = time.perf_counter() - t0
        print(f"loader  DataLoader batch 64, 0 workers: {seen / dt:,.0f} samples/s")


if __name__ == "__main__":
    main()
