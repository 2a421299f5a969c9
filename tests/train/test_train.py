"""The training loop: resume is bit-for-bit, a tiny policy learns, bad input is refused."""

import json
import re

import numpy as np
import pytest
import torch

from edgevla.errors import BadInput
from edgevla.policies.factory import load_policy
from edgevla.train.config import TrainConfig
from edgevla.train.loop import TrainingError, batch_indices, train
from edgevla.train.run_folder import last_checkpoint, read_log


def _cfg(dataset, out, **kw):
    base = dict(policy="act", preset="tiny", dataset=(dataset,), out=out, steps=6, batch_size=2,
                save_freq=3, log_freq=1, threads=1, val_batches=1)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def test_batch_indices_cover_each_epoch_once():
    n, b = 10, 3
    seen = np.concatenate([batch_indices(0, s, b, n) for s in range(10)])  # 30 = 3 epochs
    for e in range(3):
        assert sorted(seen[e * n : (e + 1) * n]) == list(range(n))
    assert not np.array_equal(batch_indices(0, 0, b, n), batch_indices(1, 0, b, n))


def test_resume_equals_uninterrupted(tiny_recording, tmp_path):
    _, ds = tiny_recording
    full = train(_cfg(ds, tmp_path / "full"))
    # Interrupted: stop after the step-3 checkpoint, then resume to 6.
    train(_cfg(ds, tmp_path / "cut", steps=3))
    resumed = train(_cfg(ds, tmp_path / "cut", resume=True))
    assert resumed.resumed_from == 3
    a = [r["loss"] for r in read_log(tmp_path / "full") if "loss" in r]
    b = [r["loss"] for r in read_log(tmp_path / "cut") if "loss" in r]
    assert a == b and len(a) == 6
    wa = load_policy(last_checkpoint(tmp_path / "full")[1]).state_dict()
    wb = load_policy(last_checkpoint(tmp_path / "cut")[1]).state_dict()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert full.final_val_loss is not None


def test_time_budget_stops_with_a_checkpoint_and_counts_across_resumes(tiny_recording, tmp_path):
    """max_minutes=0 stops after the first step, and the checkpoint it leaves records the wall
    time, so a resumed run keeps counting from it and a spent budget is refused."""
    _, ds = tiny_recording
    first = train(_cfg(ds, tmp_path / "b", max_minutes=0.0))
    assert first.stopped_by_time_budget and first.steps == 1
    ckpt = last_checkpoint(tmp_path / "b")[1]
    assert ckpt.name == "step-000001" and (ckpt / "train_info.json").is_file()
    spent = torch.load(ckpt / "training_state.pt", weights_only=False)["train_wall_s"]
    assert spent > 0
    with pytest.raises(TrainingError, match="raise --max-minutes"):
        train(_cfg(ds, tmp_path / "b", resume=True, max_minutes=spent / 60))
    again = train(_cfg(ds, tmp_path / "b", resume=True, max_minutes=(spent + 1e-6) / 60))
    assert again.resumed_from == 1 and again.steps == 2 and again.stopped_by_time_budget
    assert again.total_train_wall_s > spent
    with pytest.raises(ValueError, match="max_minutes"):
        _cfg(ds, tmp_path / "c", max_minutes=-1.0)


def test_wall_time_of_an_older_checkpoint_comes_from_the_log(tmp_path):
    from edgevla.train.loop import _wall_time_so_far

    (tmp_path / "log.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in [{"step": 50, "loss": 1.0, "wall_s": 20.0},
                                              {"step": 100, "loss": 0.9, "wall_s": 41.0},
                                              {"step": 150, "loss": 0.8, "wall_s": 60.0}])
    )  # fmt: skip
    assert _wall_time_so_far(tmp_path, {}, 100) == 41.0
    assert _wall_time_so_far(tmp_path, {"train_wall_s": 7.5}, 100) == 7.5


def test_existing_run_needs_resume(tiny_recording, tmp_path):
    _, ds = tiny_recording
    train(_cfg(ds, tmp_path / "r", steps=3))
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(ds, tmp_path / "r", steps=3))


def test_resume_with_another_network_is_refused_naming_the_fields(tiny_recording, tmp_path):
    """The run's network and the one this call builds differ: one BadInput naming the fields
    and how the run began, not PyTorch's screen of missing keys; the run is untouched."""
    _, ds = tiny_recording
    train(_cfg(ds, tmp_path / "r", steps=3))
    with pytest.raises(BadInput, match=r"chunk_size 10 -> 20.*--preset tiny --overrides \(none\)"):
        train(_cfg(ds, tmp_path / "r", steps=6, resume=True, overrides=("chunk_size=20",)))
    assert last_checkpoint(tmp_path / "r")[0] == 3
    result = train(_cfg(ds, tmp_path / "r", steps=3, resume=True))  # already there: said so
    assert any("already at step 3 (>= --steps 3): nothing to train" in n for n in result.notes)


def test_resume_from_a_damaged_weights_file_is_one_line(tiny_recording, tmp_path):
    _, ds = tiny_recording
    train(_cfg(ds, tmp_path / "r", steps=3))
    weights = last_checkpoint(tmp_path / "r")[1] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, not empty
    with pytest.raises(BadInput, match="model.safetensors"):
        train(_cfg(ds, tmp_path / "r", steps=6, resume=True))


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("chunk_sise=20", "act has no config field 'chunk_sise'; did you mean chunk_size?"),
        ("chunk_size=abc", "chunk_size='abc' must be an int (the preset has 10)"),
        ("chunk_size=-5", "chunk_size=-5 refused by the act config: chunk_size must be"),
        ("chunk_size=true", "chunk_size=True must be an int"),  # JSON true is an int in Python
        ("image_hw=[64,64]", "image_hw comes from the dataset"),
    ],
)
def test_bad_overrides_are_refused_before_training(override, says, tiny_recording, tmp_path):
    _, ds = tiny_recording
    with pytest.raises(BadInput, match=re.escape(says)) as refused:
        train(_cfg(ds, tmp_path / "o", overrides=(override,)))
    assert str(refused.value).startswith("--overrides: ")
    assert last_checkpoint(tmp_path / "o") is None


def test_tiny_act_overfits(tiny_recording, tmp_path):
    """Through the whole loop (real recording, normaliser, AdamW), the L1 loss on two episodes
    falls at least 1.5x in 120 steps (measured 1.9x; tests/policies/act pins the model alone
    at 5x with a frozen backbone)."""
    _, ds = tiny_recording
    train(
        _cfg(ds, tmp_path / "o", steps=120, batch_size=4, save_freq=120, log_freq=1, augment=False)
    )
    losses = [r["l1_loss"] for r in read_log(tmp_path / "o") if "l1_loss" in r]
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < first / 1.5, (first, last)


def test_curves_and_config_written(tiny_recording, tmp_path):
    _, ds = tiny_recording
    train(_cfg(ds, tmp_path / "c", steps=3))
    assert (tmp_path / "c" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "c" / "train_config.json").read_text())["policy"] == "act"


def test_dataset_without_a_needed_camera_is_refused(tiny_recording):
    from edgevla.dataset.torch_dataset import ActionChunkDataset
    from edgevla.policies.act.config import act_edge_preset
    from edgevla.train.loop import _check_features

    _, ds = tiny_recording
    policy_cfg = act_edge_preset(cameras=("top", "wrist"))
    with pytest.raises(TrainingError, match="observation.images.wrist"):
        _check_features(policy_cfg, ActionChunkDataset(ds, chunk_size=policy_cfg.chunk_size))


def test_nan_in_batch_is_refused():
    from edgevla.train.loop import check_finite

    with pytest.raises(TrainingError, match="observation.state"):
        check_finite({"observation.state": torch.tensor([[0.0, float("nan")]])}, "step 0")


def test_checkpoint_of_another_policy_type_is_refused(tiny_recording, tmp_path):
    _, ds = tiny_recording
    train(_cfg(ds, tmp_path / "t", steps=3))
    with pytest.raises(ValueError, match="'act' (checkpoint|policy).*'smolvla'"):
        load_policy(last_checkpoint(tmp_path / "t")[1], expected_type="smolvla")


def test_smolvla_trains_through_the_same_loop(tiny_recording, tmp_path):
    _, ds = tiny_recording
    result = train(_cfg(ds, tmp_path / "s", policy="smolvla", steps=3))
    assert result.final_loss is not None and np.isfinite(result.final_loss)
    assert load_policy(last_checkpoint(tmp_path / "s")[1], expected_type="smolvla") is not None


def test_weight_average_follows_its_formula():
    from edgevla.train.ema import WeightAverage

    net = torch.nn.Linear(2, 1)
    torch.nn.init.zeros_(net.weight)
    torch.nn.init.zeros_(net.bias)
    avg = WeightAverage(net, decay=0.5)
    expected = torch.zeros(1, 2)
    for k, value in enumerate([1.0, 2.0, 3.0]):
        net.weight.data.fill_(value)
        d = min(0.5, (1 + k) / (10 + k))  # warm-up: 0.1, 0.18, 0.25 here
        expected = d * expected + (1 - d) * value
        avg.update(net)
    assert torch.allclose(avg.model.weight, expected)
    assert not avg.model.weight.requires_grad and avg.updates == 3
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        WeightAverage(net, decay=1.0)
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=0.0)


def test_ema_checkpoint_holds_the_average_and_resumes_bit_for_bit(tiny_recording, tmp_path):
    _, ds = tiny_recording
    train(_cfg(ds, tmp_path / "full", ema_decay=0.9))
    train(_cfg(ds, tmp_path / "cut", steps=3, ema_decay=0.9))
    train(_cfg(ds, tmp_path / "cut", resume=True, ema_decay=0.9))
    a = [r["loss"] for r in read_log(tmp_path / "full") if "loss" in r]
    b = [r["loss"] for r in read_log(tmp_path / "cut") if "loss" in r]
    assert a == b and len(a) == 6
    full, cut = (last_checkpoint(tmp_path / r)[1] for r in ("full", "cut"))
    saved_full, saved_cut = load_policy(full).state_dict(), load_policy(cut).state_dict()
    raw_full = torch.load(full / "training_state.pt", weights_only=False)["raw_model"]
    raw_cut = torch.load(cut / "training_state.pt", weights_only=False)["raw_model"]
    for k in saved_full:
        assert torch.equal(saved_full[k], saved_cut[k]), k
        assert torch.equal(raw_full[k], raw_cut[k]), k
    # The saved model is the average, not the last step's weights.
    assert any(not torch.equal(saved_full[k], raw_full[k]) for k in saved_full)
    assert json.loads((full / "train_info.json").read_text())["ema_decay"] == 0.9
