"""`edgevla bench latency`: p50/p90/p99 per call and stage at each thread count, peak RSS in a
fresh process, size on disk, FLOPs and the floor, --json and --plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgevla.cli import main
from edgevla.deploy.bench import MIB, LatencyBenchConfig, bench_latency

from .conftest import ASSET


def test_a_row_per_thread_count_with_percentiles_memory_disk_and_floor(bundle) -> None:
    result = bench_latency(LatencyBenchConfig(bundles=(bundle,), threads=(1, 2), calls=5, warmup=1))
    assert [r.threads for r in result.rows] == [1, 2]
    assert [p["threads"] for p in result.peaks] == [1, 2]
    disk = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file()) / MIB
    for row in result.rows:
        assert 0 < row.p50_s <= row.p90_s <= row.p99_s
        assert list(row.stages_p50_s) == ["vision", "transformer"]
        for stage in row.stages_p50_s:
            assert 0 < row.stages_p50_s[stage] <= row.stages_p90_s[stage] <= row.stages_p99_s[stage]
        assert 0 < row.rss_mb < row.rss_process_mb
        assert row.disk_mb == pytest.approx(disk)
        assert row.flops == pytest.approx(sum(row.stages_flops.values())) and row.flops > 0
        assert row.unresolved_nodes == 0
        assert row.floor_s == pytest.approx(sum(row.stages_floor_s.values())) and row.floor_s > 0
        assert row.x_floor == pytest.approx(row.p50_s / row.floor_s)
        assert row.stages_x_floor["vision"] == pytest.approx(
            row.stages_p50_s["vision"] / row.stages_floor_s["vision"]
        )
        assert row.vs_pytorch is None  # no checkpoint in this run


def test_json_and_plot_with_pytorch_of_the_same_weights(bundle, tmp_path, capsys) -> None:
    from PIL import Image

    png = tmp_path / "latency.png"
    code = main(["bench", "latency", "--checkpoint", str(ASSET), "--bundles", str(bundle),
                 "--threads", "1", "--calls", "2", "--warmup", "1", "--plot", str(png), "--json"])  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["figure"] == str(png)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 100
    torch_row, kept_row, onnx_row = out["rows"]
    assert [r["format"] for r in out["rows"]] == ["PyTorch", "PyTorch", "ONNX Runtime"]
    assert (torch_row["malloc"], kept_row["malloc"], onnx_row["malloc"]) == ("system", "kept", None)
    assert kept_row["name"] == torch_row["name"] + " (malloc kept)"
    assert onnx_row["vs_pytorch_kept"] == pytest.approx(kept_row["p50_s"] / onnx_row["p50_s"])
    assert kept_row["vs_pytorch"] == pytest.approx(torch_row["p50_s"] / kept_row["p50_s"])
    for key in ("p50_s", "p90_s", "p99_s", "rss_mb", "rss_process_mb", "disk_mb", "flops",
                "floor_s", "x_floor", "vs_pytorch", "stages_p90_s", "stages_p99_s", "stages_x_floor"):  # fmt: skip
        assert key in onnx_row
    assert torch_row["vs_pytorch"] == 1.0
    assert onnx_row["vs_pytorch"] == pytest.approx(torch_row["p50_s"] / onnx_row["p50_s"])
    # eager PyTorch is charged the FLOPs of the bundle exported from the same checkpoint
    assert torch_row["flops"] == onnx_row["flops"] and torch_row["floor_s"] > 0
    assert torch_row["disk_mb"] == pytest.approx((ASSET / "model.safetensors").stat().st_size / MIB)
    assert set(onnx_row["stages_p50_s"]) == {"vision", "transformer"}
    assert {"fp32_gflops", "int8_gops", "threads", "fp32_size", "int8_size"} <= set(out["peaks"][0])


def _page_faults_of_reallocating(keep: bool) -> int:
    """Minor page faults of 5 rounds of malloc, fill and free of 64 MB, as PyTorch's CPU
    allocator does for a large activation, after a first round, in a fresh process (mallopt
    changes the process for good). C's malloc, not numpy: numpy asks for huge pages."""
    import ctypes
    import resource

    from edgevla.deploy.bench import keep_freed_memory

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 * 2**20  # above glibc's largest mmap threshold (32 MB)

    def round_trip() -> None:
        buffer = libc.malloc(size)
        ctypes.memset(buffer, 1, size)
        libc.free(buffer)

    if keep:
        keep_freed_memory()
    round_trip()  # the first round maps the memory either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        round_trip()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_kept_memory_spares_the_kernel_refilling_large_buffers() -> None:
    """Why PyTorch is timed twice: freed large buffers go back to the kernel and come back as
    fresh zero-filled pages (16 k faults per 64 MB), unless the process keeps them."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from edgevla.deploy.bench import can_keep_freed_memory

    if not can_keep_freed_memory():
        pytest.skip("mallopt is glibc's")
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), max_tasks_per_child=1) as pool:
        system = pool.submit(_page_faults_of_reallocating, False).result()
        kept = pool.submit(_page_faults_of_reallocating, True).result()
    # each 64 MB round faults its pages in again: 16384 of 4 KB, or 32 of 2 MB where the kernel
    # backs every mapping with huge pages (transparent_hugepage "always"; "madvise" here)
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    huge = thp.exists() and "[always]" in thp.read_text()
    assert system >= 5 * (32 if huge else 16_384) * 0.9
    assert kept * 10 < system


def test_bad_arguments_are_one_line_before_any_work(bundle, tmp_path, capsys) -> None:
    assert main(["bench", "latency", "--bundles", str(bundle), "--plot", str(tmp_path / "a.jpg")]) == 2  # fmt: skip
    assert "--plot: must end in .png" in capsys.readouterr().err
    assert main(["bench", "latency", "--bundles", str(bundle), "--threads", "0"]) == 2
    assert not (tmp_path / "a.jpg").exists()
    assert LatencyBenchConfig(bundles=(bundle,), threads=1).threads == (1,)
    assert main(["bench", "latency", "--bundles", str(bundle), "--pytorch-malloc", "jemalloc"]) == 2
    assert "--pytorch-malloc: must be system and/or kept" in capsys.readouterr().err


def test_rounds_interleave_rows_and_pool_their_calls(bundle, capsys) -> None:
    from edgevla.deploy.bench import _pool_into

    pooled: dict = {}
    _pool_into(pooled, {"times": [1.0, 2.0], "stages": {"vision": [0.5]}, "rss_mb": 10.0,
                        "rss_process_mb": 50.0})  # fmt: skip
    _pool_into(pooled, {"times": [3.0], "stages": {"vision": [0.7]}, "rss_mb": 12.0,
                        "rss_process_mb": 40.0})  # fmt: skip
    assert pooled == {"times": [1.0, 2.0, 3.0], "stages": {"vision": [0.5, 0.7]},
                      "rss_mb": 12.0, "rss_process_mb": 50.0}  # fmt: skip
    code = main(["bench", "latency", "--bundles", str(bundle), str(bundle), "--threads", "1",
                 "--calls", "2", "--warmup", "0", "--rounds", "2", "--json"])  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rounds"] == 2 and len(out["rows"]) == 2
    assert main(["bench", "latency", "--bundles", str(bundle), "--rounds", "0"]) == 2
    assert "--rounds" in capsys.readouterr().err
