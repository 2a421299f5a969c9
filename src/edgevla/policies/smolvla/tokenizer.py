"""A byte-level tokenizer for the task string: no vocabulary file, no download, deterministic.

SmolVLA tokenizes the task with SmolVLM2's BPE tokenizer, which would need files from the Hugging
Face hub. Our tasks are short English sentences, so UTF-8 bytes are enough: id = byte + 1, and
id 0 is padding. The same bytes give the same ids on every machine and in the board-side runtime
(a few lines of numpy), and nothing has to be saved next to a checkpoint.

Like SmolVLA we end the task with a newline, and pad on the right to a fixed length so the
prefix has a static shape for export. A task that does not fit raises instead of being cut
silently: a truncated instruction is a different instruction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class ByteTokenizer:
    pad_id = 0
    vocab_size = 257  # padding + 256 byte values

    def __init__(self, max_length: int):
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.max_length = max_length

    def encode(self, text: str) -> list[int]:
        """Ids of one task string (newline appended if missing), without padding."""
        if not text.endswith("\n"):
            text = f"{text}\n"
        return [b + 1 for b in text.encode("utf-8")]

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i - 1 for i in ids if i != self.pad_id).decode("utf-8", errors="replace")

    def __call__(
        self, texts: str | Sequence[str], device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Tokenize a batch: returns ids (B, max_length) int64 and mask (B, max_length) bool."""
        if isinstance(texts, str):
            texts = [texts]
        ids = torch.full((len(texts), self.max_length), self.pad_id, dtype=torch.long)
        for row, text in enumerate(texts):
            encoded = self.encode(text)
            if len(encoded) > self.max_length:
                raise ValueError(
                    f"task {text!r} is {len(encoded)} bytes (with its newline) but "
                    f"tokenizer_max_length is {self.max_length}; raise tokenizer_max_length or "
                    "shorten the task"
                )
            ids[row, : len(encoded)] = torch.tensor(encoded, dtype=torch.long)
        mask = ids != self.pad_id
        return ids.to(device), mask.to(device)
