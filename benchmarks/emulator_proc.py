"""Serve the Evo Voice emulator in its own process, for the benchmarks.

The parent passes an ``EmulatorConfig`` as JSON on the command line; this process starts the
emulator on a free loopback port, optionally generates (warms) a range of days, prints one JSON
line ``{"base_url": ..., "warmed": N}`` on stdout, and serves until its stdin is closed (so it
also stops when the parent dies). Keeping the emulator out of the measured process means its
CPU (the GIL) and its memory are not charged to the code under test.

    python benchmarks/emulator_proc.py '{"seed": 7, "sessions_per_day": 1000}' --warm 2026-05-01 \
        2026-05-31
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime

from pipeline.emulator import EmulatorConfig
from pipeline.emulator.server import RunningEmulator

_DATE_FIELDS = ("history_start", "history_end")


def build_config(raw: dict) -> EmulatorConfig:
    values = dict(raw)
    for name in _DATE_FIELDS:
        if values.get(name):
            values[name] = date.fromisoformat(values[name])
    if values.get("now"):
        values["now"] = datetime.fromisoformat(values["now"])
    return EmulatorConfig(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", help="EmulatorConfig fields as a JSON object")
    parser.add_argument("--warm", nargs=2, metavar=("FIRST", "LAST"), help="days to generate")
    args = parser.parse_args(argv)
    config = build_config(json.loads(args.config))
    emulator = RunningEmulator(config, "127.0.0.1", 0)
    warmed = 0
    if args.warm:
        first, last = (date.fromisoformat(d) for d in args.warm)
        warmed = emulator.store.warm(first, last)
    emulator.start()
    print(json.dumps({"base_url": emulator.base_url, "warmed": warmed}), flush=True)
    try:
        sys.stdin.read()  # returns when the parent closes the pipe (or exits)
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
