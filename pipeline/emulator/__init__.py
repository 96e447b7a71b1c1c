"""A faithful local emulator of the Evo Voice ServiceStack API.

The demo, the tests and the benchmarks use it instead of ``https://evovoice.io``. It speaks the
real routes and shapes (see ``/work/shared/reference``): credentials login with ``ss-id``/
``ss-pid`` cookies or HTTP Basic, ``GET /sessions`` (ListSessions) with every request field,
``GET /accounts``, ``GET /auth/status``, ServiceStack's ``/json/reply/{Op}`` routes and its
``{"responseStatus": ...}`` errors. Data is generated deterministically from a seed, lazily per
UTC day; faults, latency, paging quirks and timestamp formats are knobs on
:class:`EmulatorConfig`.

Public API::

    from pipeline.emulator import EmulatorConfig, run_emulator, serve_forever

    with run_emulator(EmulatorConfig(seed=7, sessions_per_day=500)) as emu:
        emu.base_url          # "http://127.0.0.1:54321" (random free port)
        emu.config            # the live EmulatorConfig: change knobs while it runs
        emu.store             # EmulatorStore: ground truth and mutations
        emu.stats             # EmulatorStats: request counts, faults, request log

    serve_forever(config: EmulatorConfig | None = None, host: str = "127.0.0.1",
                  port: int = 8000) -> None
        # Foreground server for ``evo-sync fake-api``; prints the URL and credentials,
        # returns on Ctrl-C.

Also runnable as ``python -m pipeline.emulator --port 8000``.
"""

from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.server import (
    EmulatorStats,
    EvoVoiceEmulator,
    RequestRecord,
    RunningEmulator,
    run_emulator,
    serve_forever,
)
from pipeline.emulator.store import EmulatorStore, SessionQuery
from pipeline.emulator.timefmt import parse_served

__all__ = [
    "EmulatorConfig",
    "EmulatorStats",
    "EmulatorStore",
    "EvoVoiceEmulator",
    "RequestRecord",
    "RunningEmulator",
    "SessionQuery",
    "parse_served",
    "run_emulator",
    "serve_forever",
]
