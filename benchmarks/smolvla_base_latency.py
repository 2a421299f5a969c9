"""Latency of the full-size SmolVLA architecture (smolvla_base_preset, ~403M parameters, random
weights: latency does not depend on them) in PyTorch and as ONNX bundles, on this CPU.

    .venv/bin/python benchmarks/smolvla_base_latency.py [--out outputs/smolvla_base] [--calls 3]

Writes a random-weight checkpoint, exports it (vision / prefill / expert_step), quantises it with
the named plans (selective-dynamic: ONNX Runtime's static calibration of the full-size vision
stage needs more than this machine's 24 GB) and runs `edgevla bench latency` over all of them; prints the table and writes
latency.json. The paper's SmolVLA on the i.MX 95: 29.1 s (ONNX FP32) -> 6.15 s (optimised).
Figures for the README; never a CI gate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from edgevla.deploy.bench import LatencyBenchConfig, bench_latency
from edgevla.deploy.export import ExportConfig, export_bundle
from edgevla.deploy.quantize import QuantizeConfig, quantize_bundle
from edgevla.policies.smolvla.config import smolvla_base_preset
from edgevla.policies.smolvla.model import SmolVLAPolicy


def random_checkpoint(folder: Path) -> Path:
    """smolvla_base_preset with random weights and unit statistics, saved as a checkpoint."""
    torch.manual_seed(0)
    cfg = smolvla_base_preset()
    stats = {k: {"mean": np.zeros(6, np.float32), "std": np.ones(6, np.float32)}
             for k in ("observation.state", "action")}  # fmt: skip
    for key in cfg.image_keys:
        stats[key] = {
            "mean": np.zeros((3, 1, 1), np.float32),
            "std": np.ones((3, 1, 1), np.float32),
        }
    SmolVLAPolicy(cfg).save_pretrained(folder, stats)
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("outputs/smolvla_base"))
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--plans", nargs="*", default=["int8-all", "selective-dynamic"],
                   help="plan names or .yaml plan files")  # fmt: skip
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = args.out / "checkpoint"
    if not (ckpt / "model.safetensors").is_file():
        random_checkpoint(ckpt)
    fp32 = args.out / "bundle_fp32"
    if not fp32.is_dir():
        export_bundle(
            ExportConfig(checkpoint=ckpt, out=fp32, parity_observations=1, threads=args.threads)
        )
    bundles = [fp32]
    for plan in args.plans:
        out = args.out / f"bundle_{Path(plan).stem}"
        if not out.is_dir():
            quantize_bundle(QuantizeConfig(bundle=fp32, out=out, plan=plan, calibration_observations=4,
                                           eval_observations=2))  # fmt: skip
        bundles.append(out)
    result = bench_latency(LatencyBenchConfig(checkpoint=ckpt, bundles=tuple(bundles),
                                              threads=args.threads, calls=args.calls, warmup=1))  # fmt: skip
    (args.out / "latency.json").write_text(json.dumps(result.to_dict(), indent=2))
    for r in result.rows:
        stages = " ".join(f"{k} {v:.3f}" for k, v in r.stages_p50_s.items())
        print(
            f"{r.name:<20} {r.format:<13} {r.precision:<28} p50 {r.p50_s:.3f} s  p95 {r.p95_s:.3f} s  {stages}"
        )


if __name__ == "__main__":
    main()
