"""The run folder: only complete checkpoints are listed; what a killed save leaves is ignored,
then cleaned with a note; a live trainer's save is left alone; publishing is all or nothing."""

import os

import pytest

from edgevla.errors import BadInput
from edgevla.train import run_folder as rf


def _complete(run, step, state=b"state"):
    folder = rf.checkpoint_dir(run, step)
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes(b"x")
    (folder / rf.STATE_FILE).write_bytes(state)
    return folder


def _killed_save(run, step, name=None):
    """What a kill -9 in the middle of a save leaves: a temp folder, a 0-byte state."""
    folder = rf.checkpoints_root(run) / (name or f".step-{step:06d}.tmp")
    folder.mkdir(parents=True)
    (folder / "config.json").write_bytes(b"x")
    (folder / rf.STATE_FILE).write_bytes(b"")
    return folder


def test_half_written_checkpoints_are_ignored_and_cleaned_with_a_note(tmp_path):
    good = _complete(tmp_path, 3)
    stray = [_killed_save(tmp_path, 5), _killed_save(tmp_path, 6, name="step-000006.tmp")]
    notes = []
    assert rf.list_checkpoints(tmp_path, notes.append, clean=False) == [(3, good)]
    assert all(p.exists() for p in stray) and not notes  # clean=False: left alone
    assert rf.list_checkpoints(tmp_path, notes.append) == [(3, good)]
    assert not any(p.exists() for p in stray)
    assert len(notes) == 2 and all("did not finish" in n for n in notes)
    assert rf.last_checkpoint(tmp_path) == (3, good)


def test_a_step_folder_lacking_files_is_skipped_but_kept(tmp_path):
    _complete(tmp_path, 2)
    empty_state = _complete(tmp_path, 4, state=b"")
    notes = []
    assert [s for s, _ in rf.list_checkpoints(tmp_path, notes.append)] == [2]
    assert empty_state.exists() and "training_state.pt" in notes[0]


def test_a_live_trainers_save_is_not_removed(tmp_path):
    stray = _killed_save(tmp_path, 5)
    with rf.RunLock(tmp_path):
        assert rf.list_checkpoints(tmp_path) == []
        assert stray.exists()
        with pytest.raises(BadInput, match="another process is training"):
            rf.RunLock(tmp_path).acquire()
    rf.list_checkpoints(tmp_path)
    assert not stray.exists()


def test_names_that_are_not_steps_are_not_checkpoints(tmp_path):
    _complete(tmp_path, 1)
    (rf.checkpoints_root(tmp_path) / "notes.txt").write_text("hi")
    (rf.checkpoints_root(tmp_path) / "step-12").mkdir()
    assert [s for s, _ in rf.list_checkpoints(tmp_path)] == [1]
    assert rf.parse_step("step-000005.tmp") is None and rf.parse_step("step-000005") == 5
    assert rf.list_checkpoints(tmp_path / "nothing") == []


def test_write_checkpoint_publishes_whole_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError), rf.write_checkpoint(tmp_path, 7) as tmp:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("killed")
    assert not rf.checkpoint_dir(tmp_path, 7).exists()
    assert list(rf.checkpoints_root(tmp_path).iterdir()) == []
    seen = []
    rf.PAUSE_HOOK = seen.append
    try:
        with rf.write_checkpoint(tmp_path, 7) as tmp:
            assert tmp.name.startswith(".") and not rf.checkpoint_dir(tmp_path, 7).exists()
            for name in ("config.json", "model.safetensors", rf.STATE_FILE):
                (tmp / name).write_text("1")
    finally:
        rf.PAUSE_HOOK = None
    assert seen == ["publish", "published"]
    assert rf.list_checkpoints(tmp_path) == [(7, rf.checkpoint_dir(tmp_path, 7))]
    with rf.write_checkpoint(tmp_path, 7) as tmp:  # a re-save replaces the folder
        for name in ("config.json", "model.safetensors", rf.STATE_FILE):
            (tmp / name).write_text("2")
    assert (rf.checkpoint_dir(tmp_path, 7) / rf.STATE_FILE).read_text() == "2"
    assert sorted(p.name for p in rf.checkpoints_root(tmp_path).iterdir()) == ["step-000007"]


def test_best_link_is_replaced_atomically(tmp_path):
    a, b = _complete(tmp_path, 1), _complete(tmp_path, 2)
    assert rf.best_checkpoint(tmp_path) is None
    rf.set_best(tmp_path, a)
    rf.set_best(tmp_path, b)
    assert rf.best_checkpoint(tmp_path) == b.resolve()
    assert os.path.islink(rf.best_link(tmp_path))


def test_a_torn_last_log_line_is_dropped_and_a_bad_middle_line_named(tmp_path):
    rf.append_log(tmp_path, {"step": 1, "loss": 1.0})
    rf.append_log(tmp_path, {"step": 2, "loss": 0.5})
    with open(rf.log_path(tmp_path), "a") as f:
        f.write('{"step": 3, "lo')  # killed mid-append
    notes = []
    assert [r["step"] for r in rf.read_log(tmp_path, notes.append)] == [1, 2]
    assert "torn last line 3" in notes[0]
    rf.truncate_log(tmp_path, 1)
    assert [r["step"] for r in rf.read_log(tmp_path)] == [1]
    rf.log_path(tmp_path).write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(BadInput, match="line 2 is not JSON"):
        rf.read_log(tmp_path)
