"""``python -m pipeline.emulator``: serve the Evo Voice emulator in the foreground."""

from __future__ import annotations

import argparse

from pipeline.emulator import EmulatorConfig, serve_forever


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sessions-per-day", type=int, default=200)
    parser.add_argument("--days", type=int, default=30, help="days of history")
    parser.add_argument("--timestamp-format", default="z")
    args = parser.parse_args(argv)
    serve_forever(
        EmulatorConfig(
            seed=args.seed,
            sessions_per_day=args.sessions_per_day,
            days_of_history=args.days,
            timestamp_format=args.timestamp_format,
            live_clock=True,
        ),
        host=args.host,
        port=args.port,
    )


if __name__ == "__main__":
    main()
