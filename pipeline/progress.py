"""A process-wide hook through which the CLI's progress bar hears about synced days and pages.

Dagster runs the assets in the CLI's own process (``execute_in_process``), so a plain callback
is enough; under ``dagster dev`` nobody listens and the calls cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_listener: Callable[[str, Any], None] | None = None


def set_listener(listener: Callable[[str, Any], None] | None) -> None:
    global _listener
    _listener = listener


def emit(event: str, payload: Any) -> None:
    if _listener is not None:
        _listener(event, payload)
