"""Turn staged episodes into LeRobot v3.0's concatenated files, inside a build directory.

Given what is already published (the episodes table) and the staged episodes that continue
it, `build_publication` writes, under `build/` with their final relative paths:
- new data/chunk-C/file-F.parquet files (one row group per episode, like LeRobot), with the
  global `index` and `task_index` filled in;
- new videos/<key>/chunk-C/file-F.mp4 files per camera, episodes remuxed back to back (no
  re-encoding) and located by [from_timestamp, to_timestamp);
- a new meta/episodes/chunk-C/file-F.parquet with the new episodes' rows (per-episode stats
  flattened, extra columns appended);
- replacements for meta/stats.json (aggregated over all episodes, old and new),
  meta/tasks.parquet and meta/info.json.
Published files are never rewritten: new episodes go to the next chunk/file indices, files
roll over at LeRobot's size limits (100 MB data, 200 MB video). writer.py then moves the
build into place under its commit protocol.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edgevla.dataset import stats
from edgevla.dataset.lerobot import layout, staging
from edgevla.dataset.lerobot.layout import DatasetFormatError
from edgevla.dataset.spec import DatasetSpec
from edgevla.dataset.video import concat_videos

ChunkFile = tuple[int, int]


def build_publication(
    root: Path,
    build: Path,
    spec: DatasetSpec,
    staged: list[Path],
    published: pa.Table | None,
) -> list[str]:
    """Write the new files into `build`; returns their root-relative paths, meta/info.json last.

    staged: episode directories in episode order, continuing `published` without a gap.
    """
    features = spec.features
    manifests = [staging.read_manifest(d) for d in staged]
    last_row = published.slice(published.num_rows - 1).to_pylist()[0] if published else None

    def first_file(chunk_col: str, file_col: str) -> ChunkFile:
        if last_row is None:
            return (0, 0)
        return layout.next_chunk_file(last_row[chunk_col], last_row[file_col])

    tasks: list[str] = []
    old_stats: list[dict[str, stats.FeatureStats]] = []
    frame_offset = 0
    if published is not None:
        tasks = layout.read_parquet(root / layout.TASKS_PATH, "tasks").column("task").to_pylist()
        frame_offset = int(np.sum(published.column("length").to_numpy()))
        old_stats = [layout.stats_from_row(r) for r in published.to_pylist()]
    for m in manifests:
        if m["task"] not in tasks:
            tasks.append(m["task"])

    rows, new_stats = _write_data(
        build,
        spec,
        staged,
        manifests,
        tasks,
        frame_offset,
        first_file("data/chunk_index", "data/file_index"),
    )
    for key in spec.video_keys:
        start = first_file(f"videos/{key}/chunk_index", f"videos/{key}/file_index")
        _write_videos(build, spec, key, staged, manifests, rows, start)

    ep_file = first_file("meta/episodes/chunk_index", "meta/episodes/file_index")
    for row, ep_stats, m in zip(rows, new_stats, manifests, strict=True):
        row.update(layout.stats_columns(ep_stats))
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = ep_file
        row.update(m["metadata"])
    ep_path = build / layout.EPISODES_PATH.format(chunk_index=ep_file[0], file_index=ep_file[1])
    ep_path.parent.mkdir(parents=True, exist_ok=True)
    schema = layout.episodes_schema(features, spec.episode_columns)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), ep_path)

    total = stats.aggregate_all(old_stats + new_stats)
    total = {k: total[k] for k in features}  # info.json feature order
    (build / "meta").mkdir(parents=True, exist_ok=True)
    (build / layout.STATS_PATH).write_text(json.dumps(stats.to_json(total), indent=4))
    pq.write_table(layout.tasks_table(tasks), build / layout.TASKS_PATH)
    info = layout.build_info(
        features,
        spec.fps,
        spec.robot_type,
        total_episodes=rows[-1]["episode_index"] + 1,
        total_frames=rows[-1]["dataset_to_index"],
        total_tasks=len(tasks),
    )
    (build / layout.INFO_PATH).write_text(json.dumps(info, indent=4, ensure_ascii=False))

    files = sorted(str(p.relative_to(build)) for p in build.rglob("*") if p.is_file())
    files.remove(layout.INFO_PATH)
    return [*files, layout.INFO_PATH]


def _write_data(
    build: Path,
    spec: DatasetSpec,
    staged: list[Path],
    manifests: list[dict[str, Any]],
    tasks: list[str],
    frame_offset: int,
    start: ChunkFile,
) -> tuple[list[dict[str, Any]], list[dict[str, stats.FeatureStats]]]:
    """Data parquet files; returns the episodes' table rows (so far) and their stats."""
    features = spec.features
    schema = layout.data_schema(features)
    sizes = [(d / staging.DATA_FILE).stat().st_size for d in staged]
    assignment = assign_files(sizes, start, layout.DATA_FILES_SIZE_IN_MB)
    rows, all_stats = [], []
    writers: dict[ChunkFile, pq.ParquetWriter] = {}
    try:
        for d, m, cf in zip(staged, manifests, assignment, strict=True):
            t = layout.read_parquet(d / staging.DATA_FILE, "staged episode data")
            n = t.num_rows
            if n != m["length"]:
                raise DatasetFormatError(f"{d}: data has {n} rows, manifest says {m['length']}")
            index = np.arange(frame_offset, frame_offset + n, dtype=np.int64)
            task_index = np.full(n, tasks.index(m["task"]), dtype=np.int64)
            table = t.append_column("index", pa.array(index))
            table = table.append_column("task_index", pa.array(task_index))
            table = table.select(schema.names).cast(schema)
            if cf not in writers:
                path = build / layout.DATA_PATH.format(chunk_index=cf[0], file_index=cf[1])
                path.parent.mkdir(parents=True, exist_ok=True)
                writers[cf] = pq.ParquetWriter(path, schema)
            writers[cf].write_table(table)

            ep_stats = {}
            for key in features:
                if key in spec.video_keys:
                    ep_stats[key] = stats.from_json({key: m["image_stats"][key]})[key]
                else:
                    ep_stats[key] = stats.vector_stats(_column_array(table, key))
            all_stats.append(ep_stats)
            rows.append(
                {
                    "episode_index": m["episode_index"],
                    "tasks": [m["task"]],
                    "length": n,
                    "data/chunk_index": cf[0],
                    "data/file_index": cf[1],
                    "dataset_from_index": frame_offset,
                    "dataset_to_index": frame_offset + n,
                }
            )
            frame_offset += n
    finally:
        for w in writers.values():
            w.close()
    return rows, all_stats


def _write_videos(
    build: Path,
    spec: DatasetSpec,
    key: str,
    staged: list[Path],
    manifests: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    start: ChunkFile,
) -> None:
    """One camera's mp4 files; adds the episodes' videos/<key>/* columns to `rows`."""
    sizes = [staging.video_file(d, key).stat().st_size for d in staged]
    assignment = assign_files(sizes, start, layout.VIDEO_FILES_SIZE_IN_MB)
    for cf in dict.fromkeys(assignment):
        members = [i for i, a in enumerate(assignment) if a == cf]
        path = build / layout.VIDEO_PATH.format(video_key=key, chunk_index=cf[0], file_index=cf[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        counts = concat_videos([staging.video_file(staged[i], key) for i in members], path)
        frame = 0
        for i, count in zip(members, counts, strict=True):
            if count != manifests[i]["length"]:
                raise DatasetFormatError(
                    f"{staging.video_file(staged[i], key)} has {count} frames, the episode has "
                    f"{manifests[i]['length']}"
                )
            rows[i].update(
                {
                    f"videos/{key}/chunk_index": cf[0],
                    f"videos/{key}/file_index": cf[1],
                    f"videos/{key}/from_timestamp": frame / spec.fps,
                    f"videos/{key}/to_timestamp": (frame + count) / spec.fps,
                }
            )
            frame += count


def assign_files(sizes: list[int], start: ChunkFile, limit_mb: int) -> list[ChunkFile]:
    """(chunk, file) per episode, opening a new file when the current one would pass limit_mb."""
    out, current, used = [], start, 0
    for size in sizes:
        if used and used + size > limit_mb * 1024 * 1024:
            current, used = layout.next_chunk_file(*current), 0
        out.append(current)
        used += size
    return out


def _column_array(table: pa.Table, key: str) -> np.ndarray:
    """(T,) or (T, D) numpy view of a scalar or fixed-size-list column."""
    col = table.column(key).combine_chunks()
    if pa.types.is_fixed_size_list(col.type):
        return np.asarray(col.flatten()).reshape(len(col), col.type.list_size)
    return np.asarray(col)
