"""Activation ranges for int8 static quantisation: how each calibration method is set up in
ONNX Runtime, so that the three methods differ in what they are meant to differ in.

- minmax: the observed [min, max] of every tensor (ORT's defaults). Not with its
  `CalibMaxIntermediateOutputs`: in ORT 1.32 that drops what was collected every N
  observations instead of folding it into the ranges (the ranges then come from the last
  observations only, or it fails with "No data is collected").
- entropy: TensorRT's KL-divergence threshold. Through `quantize_static` ORT builds the
  histogram with 128 bins and searches thresholds over 128 quantised bins: with as many bins as
  levels there is only one candidate, the full range, so "entropy" returned exactly MinMax's
  ranges (measured on the shipped ACT: the same action error to the last digit). Here the
  ranges are computed with `ENTROPY_BINS` bins and `ENTROPY_LEVELS` levels and handed to
  `quantize_static` as a calibration cache (ORT >= 1.32). On the shipped ACT it clips more than
  it should: MinMax wins there (docs/experiments.md, 2026-12-03).
- percentile: ORT's defaults (2048 bins, 99.999th percentile of |x|, symmetric).

Before any of them, the stage graph is prepared by `graph_prep.prepared_for_static`.

ORT's histogram calibrators also print progress to stdout; `ort_prints_to_stderr` keeps a
command's `--json` output one object.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgevla.errors import BadInput

CALIBRATIONS = ("minmax", "entropy", "percentile")
ENTROPY_BINS = 1024
"""histogram bins over [-|x|max, |x|max]: a threshold step of |x|max / 512"""
ENTROPY_LEVELS = 256
"""levels of [-T, T] the KL search quantises to, uint8's 256; the search tries thresholds from
|x|max * ENTROPY_LEVELS / ENTROPY_BINS up to |x|max. On the shipped ACT's vision stage
(selective plan, max action error, rad): this setting 0.26; 512 levels (thresholds >= half the
maximum) 0.095; 2048 bins (thresholds >= an eighth; 3x the time: ORT's search is Python) 0.32;
MinMax 0.016. Every setting clipped activations that policy needs"""


class Feeds:
    """ONNX Runtime's CalibrationDataReader over a list of input dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


@contextlib.contextmanager
def ort_prints_to_stderr() -> Iterator[None]:
    """ORT's calibrators `print` their progress: send it to stderr, where progress belongs."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def check_calibration(calibration: str) -> None:
    """Refuse, before any work, a method this project does not know or this ONNX Runtime cannot
    run (entropy needs `quantize_static(calibration_cache_path=...)`, ORT >= 1.32)."""
    if calibration not in CALIBRATIONS:
        raise BadInput(f"must be one of {CALIBRATIONS}, got {calibration!r}", field="--calibration")
    if calibration == "entropy":
        import onnxruntime
        from onnxruntime.quantization import quantize_static

        if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
            raise BadInput(
                f"--calibration entropy needs onnxruntime >= 1.32 (this is "
                f"{onnxruntime.__version__}: its quantize_static fixes the histogram at 128 "
                "bins, which makes entropy equal minmax); upgrade onnxruntime or use "
                "--calibration minmax or percentile"
            )


def static_calibration_args(
    src: Path,
    feeds: list[dict[str, np.ndarray]],
    calibration: str,
    op_types: list[str] | None,
    workdir: Path,
) -> dict:
    """Keyword arguments for `quantize_static` that calibrate `src` on `feeds` by `calibration`
    (checked by `check_calibration`): the data reader and method for minmax and percentile, a
    file of precomputed ranges for entropy (written into `workdir`, a temporary folder)."""
    from onnxruntime.quantization import CalibrationMethod

    if calibration in ("minmax", "percentile"):
        method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
        return {"calibration_data_reader": Feeds(feeds), "calibrate_method": method[calibration]}
    return {
        "calibration_data_reader": None,
        "calibrate_method": CalibrationMethod.Entropy,
        "calibration_cache_path": entropy_ranges(src, feeds, op_types, workdir),
    }


def entropy_ranges(
    src: Path, feeds: list[dict[str, np.ndarray]], op_types: list[str] | None, workdir: Path
) -> Path:
    """Calibrate `src` on `feeds` by KL divergence with a histogram fine enough to choose a
    threshold, and write the ranges where `quantize_static(calibration_cache_path=...)` reads
    them."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    stem = Path(src).stem
    calibrator = create_calibrator(
        Path(src),
        op_types,
        augmented_model_path=str(Path(workdir) / f"{stem}.augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_LEVELS},
    )
    calibrator.collect_data(Feeds(feeds))
    path = Path(workdir) / f"{stem}.entropy-ranges.json"
    save_tensors_data(calibrator.compute_data(), path)
    return path
