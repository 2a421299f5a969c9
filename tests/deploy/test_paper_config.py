"""`edgevla bench latency --paper-config act|smolvla`: the paper's models at their real size with
random weights. The full-size build, export and timing are a benchmark (minutes, GBs), not a
test: here the configs, a small random checkpoint through the same path, the summary's
arithmetic and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from edgevla.cli import main
from edgevla.commands.bench_latency import show_paper
from edgevla.deploy.bench import LatencyBenchResult, LatencyRow
from edgevla.deploy.paper import (
    BuiltBy,
    PaperBenchConfig,
    PaperBenchResult,
    _summaries,
    code_fingerprint,
    paper_checkpoint,
    paper_policy_config,
)
from edgevla.errors import BadInput

SMALL_ACT = {"dim_model": 16, "n_heads": 2,
             "dim_feedforward": 32, "n_encoder_layers": 1, "n_vae_encoder_layers": 1,
             "latent_dim": 4, "chunk_size": 5, "n_action_steps": 5}  # fmt: skip


def test_act_is_lerobots_default_on_three_cameras_at_480x640() -> None:
    cfg = paper_policy_config("act")
    assert [k.rsplit(".", 1)[-1] for k in cfg.image_features] == ["top", "gripper", "left"]
    assert cfg.camera_hw == (480, 640)
    assert (cfg.vision_backbone, cfg.pretrained_backbone_weights) == ("resnet18", None)
    assert (cfg.dim_model, cfg.chunk_size, cfg.n_encoder_layers, cfg.n_decoder_layers) == (
        512, 100, 4, 1)  # fmt: skip


def test_smolvla_is_the_base_preset() -> None:
    from edgevla.policies.smolvla.config import smolvla_base_preset

    cfg = paper_policy_config("smolvla")
    assert cfg == smolvla_base_preset()
    assert (cfg.vision_num_layers, cfg.text_hidden_size, cfg.num_vlm_layers) == (12, 960, 16)


def test_a_random_checkpoint_with_unit_statistics_reused_on_a_rerun(tmp_path) -> None:
    from edgevla.policies.checkpoint import WEIGHTS_FILE, Checkpoint

    folder = paper_checkpoint("act", tmp_path / "checkpoint", **SMALL_ACT)
    ckpt = Checkpoint.open(folder)
    assert ckpt.policy_type == "act"
    assert ckpt.config == paper_policy_config("act", **SMALL_ACT)
    stats = ckpt.require_stats()
    assert set(stats) == set(ckpt.config.all_features)
    for key, s in stats.items():
        assert np.all(s["mean"] == 0) and np.all(s["std"] == 1), key
    assert stats["observation.images.top"]["mean"].shape == (3, 1, 1)
    mtime = (folder / WEIGHTS_FILE).stat().st_mtime_ns
    assert paper_checkpoint("act", folder, **SMALL_ACT) == folder  # reused, not rewritten
    assert (folder / WEIGHTS_FILE).stat().st_mtime_ns == mtime
    with pytest.raises(BadInput, match="other than the --paper-config act"):
        paper_checkpoint("act", folder, **{**SMALL_ACT, "dim_model": 32})
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]  # nothing left aside


def _row(name: str, fmt: str, threads: int, p50: float, x_floor: float | None) -> LatencyRow:
    malloc = "system" if fmt == "PyTorch" else None  # as bench writes them
    return LatencyRow(name, fmt, "fp32", threads, p50, p50, p50, 1.0, 1.0, 1.0, x_floor=x_floor,
                      malloc=malloc)  # fmt: skip


def test_the_best_plan_is_the_fastest_quantised_bundle_against_the_goals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [_row("checkpoint", "PyTorch", 2, 1.0, 20.0),
            _row("bundle_fp32", "ONNX Runtime", 2, 0.5, 10.0),
            _row("bundle_int8-all", "ONNX Runtime", 2, 0.3, 4.0),
            _row("bundle_int8-static-all", "ONNX Runtime", 2, 0.2, 2.5)]  # fmt: skip
    plan_of = {"bundle_fp32": "fp32", "bundle_int8-all": "int8-all",
               "bundle_int8-static-all": "int8-static-all"}  # fmt: skip
    errors = {
        "int8-all": {"max": 0.05, "mean": 0.01},
        "int8-static-all": {"max": 0.1, "mean": 0.02},
    }
    (s,) = _summaries("act", LatencyBenchResult(rows, 3, 1, "here"), plan_of, errors)
    assert (s.threads, s.best_plan, s.best_p50_s) == (2, "int8-static-all", 0.2)
    assert s.best_action_error_max == 0.1
    assert s.fp32_bundle_vs_eager == pytest.approx(2.0)
    assert s.best_vs_eager == pytest.approx(5.0) and s.best_x_floor == 2.5
    assert (s.meets_vs_eager, s.meets_x_floor) == (True, True)
    assert s.plans_vs_eager == {"int8-all": pytest.approx(1 / 0.3), "int8-static-all": 5.0}
    assert (s.eager_kept_p50_s, s.best_vs_eager_kept, s.plans_vs_eager_kept) == (None, None, {})
    # the paper's ratio is over its ONNX FP32 export: each plan over our fp32 bundle beside it
    assert s.plans_vs_fp32_bundle == {"int8-all": pytest.approx(0.5 / 0.3),
                                      "int8-static-all": pytest.approx(2.5)}  # fmt: skip
    assert s.paper_vs_onnx_fp32 == pytest.approx(2.86 / 0.32)
    # SmolVLA's goal names `selective`: not timed, nothing to judge, however fast the best is
    (s,) = _summaries("smolvla", LatencyBenchResult(rows, 3, 1, "here"), plan_of, errors)
    assert (s.goal_plan, s.meets_vs_eager, s.goal_x_floor, s.meets_x_floor) == (
        "selective", None, None, None)  # fmt: skip
    kept = LatencyRow("checkpoint (malloc kept)", "PyTorch", "fp32", 2, 0.8, 0.8, 0.8, 1.0, 1.0,
                      1.0, malloc="kept")  # fmt: skip
    selective = _row("bundle_selective", "ONNX Runtime", 2, 0.25, 3.0)
    with_selective = [*rows, kept, selective]
    (s,) = _summaries("smolvla", LatencyBenchResult(with_selective, 3, 1, "here"),
                      {**plan_of, "bundle_selective": "selective"}, errors)  # fmt: skip
    assert (s.best_plan, s.meets_vs_eager) == ("int8-static-all", False)  # selective: 4x < 4.7x
    assert s.eager_p50_s == 1.0 and s.eager_kept_p50_s == 0.8  # the kept row is no plan
    assert s.plans_vs_eager["selective"] == 4.0
    assert s.plans_vs_eager_kept["selective"] == pytest.approx(3.2)
    assert s.best_vs_eager_kept == pytest.approx(4.0)
    # printed under the table: the paper's ratio, over its ONNX FP32 export, beside ours
    show_paper(PaperBenchResult("smolvla", "DIR", {"parameters": 4e8, "cameras": ["top"],
                                                    "image_hw": [512, 512]}, {}, errors, [],
                                [s], LatencyBenchResult(with_selective, 3, 1, "here")))  # fmt: skip
    out = " ".join(capsys.readouterr().out.split())
    assert "the paper's ratio is over its ONNX FP32 export (4.7x)" in out
    assert "selective 2.0x" in out  # 0.5 s fp32 bundle / 0.25 s
    rows[3].p50_s = 0.4  # now int8-all is the best: 3.3x, 4x the floor
    (s,) = _summaries("act", LatencyBenchResult(rows, 3, 1, "here"), plan_of, errors)
    assert (s.best_plan, s.meets_vs_eager, s.meets_x_floor) == ("int8-all", False, False)
    assert s.best_action_error_max == 0.05
    # the single layout: its fp32 export is never "the best plan", its plans compete
    rows += [_row("bundle_single_fp32", "ONNX Runtime", 2, 0.1, 1.0),
             _row("bundle_single_int8-all", "ONNX Runtime", 2, 0.25, 3.0)]  # fmt: skip
    plan_of |= {
        "bundle_single_fp32": "fp32 (single)",
        "bundle_single_int8-all": "int8-all (single)",
    }
    errors["int8-all (single)"] = {"max": 0.06, "mean": 0.01}
    (s,) = _summaries("act", LatencyBenchResult(rows, 3, 1, "here"), plan_of, errors)
    assert (s.best_plan, s.best_p50_s, s.fp32_bundle_p50_s) == ("int8-all (single)", 0.25, 0.5)
    assert (s.best_vs_eager, s.best_action_error_max) == (pytest.approx(4.0), 0.06)


def test_bad_input_is_one_line_before_any_work(tmp_path, capsys) -> None:
    out = tmp_path / "paper"
    assert main(["bench", "latency", "--paper-config", "foo", "--out", str(out)]) == 2
    assert "--paper-config: must be one of act, smolvla, got 'foo'" in capsys.readouterr().err
    assert main(["bench", "latency", "--paper-config", "act", "--out", str(out),
                 "--plans", "int9-all"]) == 2  # fmt: skip
    assert "unknown plan 'int9-all'" in capsys.readouterr().err
    assert main(["bench", "latency", "--paper-config", "act", "--out", str(out),
                 "--threads", "0"]) == 2  # fmt: skip
    assert main(["bench", "latency", "--paper-config", "act", "--checkpoint", str(tmp_path)]) == 2
    assert "drop --checkpoint" in capsys.readouterr().err
    assert main(["bench", "latency", "--bundles", str(tmp_path), "--plans", "int8-all"]) == 2
    assert "--out, --plans and --layouts go with --paper-config" in capsys.readouterr().err
    assert main(["bench", "latency", "--paper-config", "smolvla", "--out", str(out),
                 "--layouts", "single"]) == 2  # fmt: skip
    assert "--layouts: smolvla exports as split, got ['single']" in capsys.readouterr().err
    assert main(["bench", "latency", "--paper-config", "act", "--out", str(out),
                 "--pytorch-malloc", "kept"]) == 2  # fmt: skip
    assert (
        "--pytorch-malloc: the goals compare with PyTorch as users run it"
        in capsys.readouterr().err
    )
    assert not out.exists()
    assert PaperBenchConfig("smolvla", out).plans == ("int8-all", "selective-dynamic", "selective")
    assert PaperBenchConfig("act", out).layouts == ("split", "single")


def test_the_single_layout_takes_only_plans_that_treat_every_stage_alike(tmp_path) -> None:
    from edgevla.deploy.paper import _names_stages

    assert not _names_stages("int8-static-linear") and not _names_stages("int8-all")
    assert _names_stages("int8-mixed") and _names_stages("selective-dynamic")
    (tmp_path / "p.yaml").write_text("'*': int8-dynamic\n")
    (tmp_path / "q.yaml").write_text("vision: int8-static\n'*': fp32\n")
    assert not _names_stages(str(tmp_path / "p.yaml")) and _names_stages(str(tmp_path / "q.yaml"))


def test_the_code_fingerprint_follows_every_source_file(tmp_path) -> None:
    root = tmp_path / "deploy"
    root.mkdir()
    (root / "export.py").write_text("A = 1\n")
    first = code_fingerprint((root,))
    assert code_fingerprint((root,)) == first
    (root / "export.py").write_text("A = 2\n")
    changed = code_fingerprint((root,))
    (root / "fusions.py").write_text("")
    assert len({first, changed, code_fingerprint((root,))}) == 3
    assert len(code_fingerprint()) == 64  # the installed packages' own sources


def test_a_bundle_is_reused_only_when_this_code_built_it(tmp_path) -> None:
    old, new = tmp_path / "bundle_fp32", tmp_path / "bundle_int8-all"
    old.mkdir()  # from a run before built_by.json existed: provenance unknown
    record = BuiltBy(tmp_path, "code-a")
    assert record.stale(old) and not record.current(old)
    assert not record.stale(new) and not record.current(new)  # absent: simply built
    new.mkdir()
    record.mark(new)
    assert record.current(new)
    assert BuiltBy(tmp_path, "code-a").current(new)  # read back from DIR/built_by.json
    assert BuiltBy(tmp_path, "code-b").stale(new)  # the code changed since
    (tmp_path / "built_by.json").write_text("{not json")
    assert BuiltBy(tmp_path, "code-a").stale(new)  # an unreadable record proves nothing
