"""The byte tokenizer is deterministic, pads on the right and refuses to truncate."""

from __future__ import annotations

import pytest
import torch
from edgevla_runtime.features import TASK

from edgevla.policies.smolvla.tokenizer import ByteTokenizer


def test_known_ids_and_padding():
    ids, mask = ByteTokenizer(6)(["ab", "a\n"])
    # byte + 1, newline (10) appended once, pad id 0 on the right
    assert ids.tolist() == [[98, 99, 11, 0, 0, 0], [98, 11, 0, 0, 0, 0]]
    assert mask.tolist() == [[True] * 3 + [False] * 3, [True] * 2 + [False] * 4]
    assert ids.dtype == torch.long and mask.dtype == torch.bool


def test_deterministic_across_instances_and_calls():
    a = ByteTokenizer(48)([TASK, "Grab the tea bag and place it in the mug"])
    b = ByteTokenizer(48)([TASK, "Grab the tea bag and place it in the mug"])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_decode_round_trip_and_single_string():
    tok = ByteTokenizer(48)
    ids, _ = tok(TASK)
    assert ids.shape == (1, 48)
    assert tok.decode(ids[0].tolist()) == TASK + "\n"
    assert max(tok.encode("tea bag é")) < ByteTokenizer.vocab_size


def test_too_long_task_raises_with_advice():
    with pytest.raises(ValueError, match="raise tokenizer_max_length"):
        ByteTokenizer(8)(["this task is too long"])
