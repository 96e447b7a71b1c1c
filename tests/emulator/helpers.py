"""Helpers for the emulator tests: authenticated sessions and paging over a real socket."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import requests

from pipeline.emulator import EmulatorConfig, RunningEmulator

#: A Wednesday afternoon (UTC); every test emulator's frozen clock.
NOW = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)


def make_config(**overrides: Any) -> EmulatorConfig:
    settings: dict[str, Any] = {
        "seed": 7,
        "sessions_per_day": 300,
        "days_of_history": 20,
        "now": NOW,
    }
    settings.update(overrides)
    return EmulatorConfig(**settings)


def basic_session(emulator: RunningEmulator) -> requests.Session:
    session = requests.Session()
    session.auth = (emulator.config.username, emulator.config.password)
    return session


def get_json(session: requests.Session, url: str, **params: Any) -> dict:
    response = session.get(url, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return orjson.loads(response.content)


def fetch_all(session: requests.Session, base_url: str, count: int = 50, **params: Any) -> list:
    """Page through /sessions until hasMorePages is false; returns every item."""
    items: list = []
    page = 0
    while True:
        body = get_json(
            session,
            f"{base_url}/sessions",
            page=page,
            countPerPage=count,
            simplifiedPaging="true",
            **params,
        )
        items.extend(body["items"])
        page += 1
        if not body["hasMorePages"]:
            return items
        assert page < 10_000
