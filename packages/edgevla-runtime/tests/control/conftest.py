"""Fixtures for the control tests: factories for the runtime's deterministic fakes."""

from __future__ import annotations

import pytest
from edgevla_runtime.testing import RecordingEnv, ScriptedRunner


@pytest.fixture
def make_env():
    """Factory: make_env(success_after=None, start=0.0, ...) -> RecordingEnv."""
    return RecordingEnv


@pytest.fixture
def make_runner():
    """Factory: make_runner(chunk_size=10, fail_on_call=None, block=None, ...) -> ScriptedRunner."""
    return ScriptedRunner
