"""Shared fixtures: emulators on random 127.0.0.1 ports, stopped after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from pipeline.emulator import RunningEmulator, run_emulator
from tests.emulator.helpers import make_config


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., RunningEmulator]]:
    """Start emulators with ``make_config(**overrides)``; all are stopped at teardown."""
    with ExitStack() as stack:
        yield lambda **overrides: stack.enter_context(run_emulator(make_config(**overrides)))


@pytest.fixture
def emu(start_emulator: Callable[..., RunningEmulator]) -> RunningEmulator:
    return start_emulator()


@pytest.fixture(scope="module")
def shared_emu() -> Iterator[RunningEmulator]:
    """One emulator for a module of read-only tests (do not change its config)."""
    with run_emulator(make_config()) as emulator:
        yield emulator
