"""A plain HTTP client for the Evo Voice API: auth, one retry policy, and paging.

No Dagster here: the client can be used from any script::

    with EvoVoiceClient(EvoVoiceSettings.from_env()) as client:
        for page in client.iter_pages("/sessions", {"startDate": "2026-11-01"}, what="Nov 1"):
            ...
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import orjson
import requests
from requests.adapters import HTTPAdapter

from pipeline.evo.errors import (
    AuthError,
    BadResponse,
    ClientError,
    ConfigError,
    RateLimited,
    RequestFailed,
    ServerError,
)
from pipeline.evo.settings import EvoVoiceSettings

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Keys by which a body without "items" is still recognisably a page (a serializer that omits
# null members may drop a null "items").
PAGING_KEYS = frozenset({"hasMorePages", "totalCount", "totalPages"})
AUTH_HINT = "check EVO_VOICE_USERNAME / EVO_VOICE_PASSWORD"
# Logins in a row for one request answered 401 (see EvoVoiceClient._exchange).
MAX_RELOGINS = 3
# A server that ignores `page` would otherwise be paged forever.
MAX_PAGES = 1_000_000


@dataclass(frozen=True)
class DecodedPage:
    """A page body turned into columns by a caller's :data:`PageDecoder`; the client only reads
    the paging facts from it and passes ``columns`` on untouched.

    A decoder may also only *screen* a body: read its paging facts from the bytes and leave the
    parse to the caller (``columns`` and ``ids`` None, ``empty`` set), who then parses bodies
    in batches, away from the paging threads."""

    columns: Any
    ids: list[Any] | None
    has_more_pages: bool | None
    total_count: int | None
    body: bytes | None = None
    empty: bool | None = None  # a screened page: whether its items list is empty


PageDecoder = Callable[[bytes], DecodedPage | None]
"""Decodes (or screens) a page body faster than ``orjson`` + dicts, or returns None for any
body it cannot take exactly (the client then parses it the ordinary way, with every check)."""


@dataclass(frozen=True)
class Page:
    """One page of a ``List*`` response: parsed JSON ``items``, or a decoder's ``columns``
    (then ``items`` is empty and ``body`` keeps the raw JSON for a caller that needs dicts), or
    a screened ``body`` the caller has yet to parse (``empty`` set, ``columns`` None)."""

    number: int
    items: list[dict[str, Any]]
    has_more_pages: bool | None
    total_count: int | None
    columns: Any = None
    ids: list[Any] | None = None
    body: bytes | None = None
    empty: bool | None = None
    # The next page had arrived when this one was yielded: a caller that batches pages knows
    # whether waiting for more would keep it idle.
    next_in: bool = False

    @classmethod
    def of_decoded(cls, number: int, decoded: DecodedPage) -> Page:
        return cls(
            number=number,
            items=[],
            has_more_pages=decoded.has_more_pages,
            total_count=decoded.total_count,
            columns=decoded.columns,
            ids=decoded.ids,
            body=decoded.body,
            empty=decoded.empty,
        )

    @property
    def screened(self) -> bool:
        return self.empty is not None

    @property
    def count(self) -> int | None:
        """The number of items; None for a screened page (not parsed yet)."""
        if self.screened:
            return None
        return len(self.items) if self.ids is None else len(self.ids)

    @property
    def is_last(self) -> bool:
        empty = self.empty if self.screened else self.count == 0
        return bool(empty) or self.has_more_pages is False

    def item_ids(self) -> list[Any]:
        if self.ids is not None:
            return self.ids
        return [item.get("id") if isinstance(item, dict) else None for item in self.items]


@dataclass
class ClientStats:
    """Counters for observability; safe to update from the paging threads."""

    requests: int = 0
    retries: int = 0
    repaired_bodies: int = 0
    relogins: int = 0
    pages: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class RateGate:
    """One rate budget shared by every thread that talks to the API.

    A 429 (or a Retry-After on any retryable answer) pauses *all* workers until the server's
    deadline, not just the one that was told to slow down.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._resume_at = 0.0
        self._lock = threading.Lock()

    def pause_for(self, seconds: float) -> None:
        with self._lock:
            self._resume_at = max(self._resume_at, self._clock() + seconds)

    def wait(self, sleep: Callable[[float], None]) -> None:
        while True:
            with self._lock:
                delay = self._resume_at - self._clock()
            if delay <= 0:
                return
            sleep(delay)


class PagingStopped(Exception):
    """A page fetched ahead is no longer needed."""


class RequestSlots:
    """At most ``limit`` page requests on the wire, started in page order, and at most
    ``limit`` pages past the last one known to be decoded.

    A slot covers one HTTP exchange, not the decoding of its body, so with one slot the next
    page is already being fetched while the previous one is decoded. The second bound keeps the
    requests past the end of the list to at most ``limit``: a page that decodes as the last
    one closes the slots before any request it did not allow can start.

    Each waiting page has its own event, set only when that page may start (or is past the
    end): waking every waiter on each change, each to take the GIL and sleep again, made a
    4-worker read of 20k sessions at 20 ms latency about 4% slower.
    """

    def __init__(self, limit: int, at_end: Callable[[], None] | None = None) -> None:
        self._limit = max(1, limit)
        self._at_end = at_end  # called once, when every page up to the last one is in
        self._active = 0
        self._next = 0
        self._decoded = 0  # pages 0.._decoded-1 are decoded (or failed)
        self._done: set[int] = set()
        self._closed = False
        self._end: int | None = None  # the lowest page decoded as the last one
        self._lock = threading.Lock()
        self._waiting: dict[int, threading.Event] = {}

    def close(self) -> None:
        """Requests not yet started are not sent (the caller has seen the last page)."""
        with self._lock:
            self._closed = True
            self._wake()

    def finished(self, number: int, *, last: bool) -> None:
        """Page ``number`` is decoded (or failed); ``last``: it ends the list."""
        with self._lock:
            if last:
                self._end = number if self._end is None else min(self._end, number)
            self._done.add(number)
            while self._decoded in self._done:
                self._done.remove(self._decoded)
                self._decoded += 1
            self._wake()
            at_end = None
            if self._end is not None and self._decoded > self._end:
                at_end, self._at_end = self._at_end, None
        if at_end is not None:
            at_end()

    def _may_start(self, number: int) -> bool:
        return (
            number <= self._next
            and self._active < self._limit
            and number <= self._decoded + self._limit
        )

    def _stopped(self, number: int) -> bool:
        # Only pages after the last one: an earlier page may still be retrying its request.
        return self._closed or (self._end is not None and number > self._end)

    def _wake(self) -> None:
        """Set the events of the waiting pages that may go on now (the lock is held)."""
        for number, event in self._waiting.items():
            if self._stopped(number) or self._may_start(number):
                event.set()

    @contextlib.contextmanager
    def hold(self, number: int) -> Iterator[None]:
        while True:
            with self._lock:
                if self._stopped(number):
                    self._waiting.pop(number, None)
                    raise PagingStopped(f"page {number} is past the end")
                if self._may_start(number):
                    self._waiting.pop(number, None)
                    self._next = max(self._next, number + 1)
                    self._active += 1
                    self._wake()  # the next page may start now too
                    break
                event = self._waiting.setdefault(number, threading.Event())
                event.clear()
            event.wait()
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                self._wake()


class _Retryable(Exception):
    def __init__(self, reason: str, status: int | None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def backoff_delay(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff with full jitter for retry number ``attempt`` (1-based)."""
    return rng.uniform(0, min(cap, initial * 2 ** (attempt - 1)))


def query_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Encode like ServiceStack clients: booleans lower-case, lists comma-joined, None dropped."""
    encoded = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            encoded[key] = "true" if value else "false"
        elif isinstance(value, list | tuple | set | frozenset):
            if value:
                encoded[key] = ",".join(str(v) for v in value)
        else:
            encoded[key] = str(value)
    return encoded


class EvoVoiceClient:
    """Talks to one Evo Voice deployment with cookie (credentials) or Basic auth.

    Thread-safe: :meth:`iter_pages` fetches ahead with ``settings.concurrency`` threads that share
    one HTTP connection pool, one login and one :class:`RateGate`.
    """

    def __init__(
        self,
        settings: EvoVoiceSettings,
        *,
        http: requests.Session | None = None,
        rate_gate: RateGate | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        if not settings.username or not settings.password.get_secret_value():
            raise ConfigError("EVO_VOICE_USERNAME and EVO_VOICE_PASSWORD must both be set")
        self.settings = settings
        self.stats = ClientStats()
        self.rate_gate = rate_gate or RateGate()
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._http = http or _session(settings.base_url)
        pool = max(10, settings.concurrency * 2)
        adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        self._http.headers.update({"Accept": "application/json", "User-Agent": "evo-sync/0.1"})
        self._login_lock = threading.Lock()
        self._login_generation = 0
        # Bumped whenever a response sets a cookie; a GET template records the one it saw.
        self._cookies_version = 0
        self._get_template: tuple[int, requests.PreparedRequest] | None = None
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self._logged_in = False
        if settings.auth == "basic":
            token = f"{settings.username}:{settings.password.get_secret_value()}"
            self._basic_header = "Basic " + base64.b64encode(token.encode()).decode()
        else:
            self._basic_header = ""

    def __enter__(self) -> EvoVoiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"EvoVoiceClient(base_url={self.settings.base_url!r}, auth={self.settings.auth!r})"

    # -- auth ---------------------------------------------------------------------------------

    def login(self) -> None:
        """Log in with ``POST /auth/credentials`` and keep the ``ss-id``/``ss-pid`` cookies."""
        if self.settings.auth == "basic":
            return
        body = {
            "userName": self.settings.username,
            "password": self.settings.password.get_secret_value(),
            "rememberMe": True,
        }
        response = self._with_retries(
            lambda: self._send("POST", "/auth/credentials", json_body=body),
            what="login",
            path="/auth/credentials",
        )
        if response.status_code in (401, 403):
            raise AuthError(
                f"Evo Voice rejected the login of user {self.settings.username!r} "
                f"(HTTP {response.status_code}): {AUTH_HINT}"
            )
        if response.status_code >= 400:
            raise ClientError(
                f"POST /auth/credentials failed with HTTP {response.status_code}",
                status=response.status_code,
            )
        self._logged_in = True
        self._login_generation += 1

    def _ensure_login(self, seen_generation: int | None = None) -> None:
        with self._login_lock:
            # Another thread may already have logged in again after our 401.
            if self._logged_in and (
                seen_generation is None or seen_generation != self._login_generation
            ):
                return
            self.login()

    # -- requests -----------------------------------------------------------------------------

    def get_json(self, path: str, params: Mapping[str, Any], *, what: str) -> dict[str, Any]:
        """GET ``path`` and return its JSON object, retrying per the policy.

        Args:
            path: route under the base URL, e.g. ``/sessions``.
            params: query parameters (lists are comma-joined, booleans lower-case).
            what: human context for error messages, e.g. ``"day 2026-11-28 page 3"``.

        Raises:
            AuthError: a 401 survived fresh logins (or the login itself was refused).
            RequestFailed: retries exhausted (the message names path, context and status).
            BadResponse: the body is not a JSON object.
            ClientError: any other 4xx.
        """
        return self._get(path, params, what=what, decoder=None)

    def _get(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        what: str,
        decoder: PageDecoder | None,
        slot: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
    ) -> dict[str, Any] | DecodedPage:
        query = query_params(params)
        if self.settings.auth == "credentials":
            self._ensure_login()

        def attempt() -> dict[str, Any] | DecodedPage:
            with slot() if slot is not None else contextlib.nullcontext():
                response = self._exchange(path, query, what)
            return self._decode(response, path=path, what=what, decoder=decoder)

        return self._with_retries(attempt, what=what, path=path)

    def _exchange(self, path: str, query: Mapping[str, str], what: str) -> requests.Response:
        """One GET, logging in again on a 401.

        A session can expire again before this request's retry when other threads use it up
        first, so a 401 is retried after each newer login, up to ``MAX_RELOGINS`` times.
        """
        for relogins in itertools.count():
            generation = self._login_generation
            response = self._send("GET", path, params=query)
            if response.status_code != 401:
                return response
            if self.settings.auth == "basic":
                raise AuthError(f"Evo Voice answered 401 to Basic auth for {path}: {AUTH_HINT}")
            if relogins == MAX_RELOGINS:
                raise AuthError(
                    f"Evo Voice still answers 401 after {MAX_RELOGINS} fresh logins: {AUTH_HINT}"
                )
            self.stats.add(relogins=1)
            log.info("401 on %s (%s); logging in again", path, what)
            self._ensure_login(seen_generation=generation)
        raise AssertionError("unreachable")

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        self.rate_gate.wait(self._sleep)
        headers = {"Authorization": self._basic_header} if self._basic_header else {}
        if json_body is not None:
            headers["Content-Type"] = "application/json"
        self.stats.add(requests=1)
        try:
            response = self._http.send(
                self._prepare(method, path, params, json_body, headers),
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                allow_redirects=False,
                stream=True,
            )
            if response.cookies:  # the server set a cookie: later requests must carry it
                self._cookies_version += 1
            _read_body(response)
        except requests.Timeout as exc:
            raise _Retryable(f"timed out ({type(exc).__name__})", None) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Retryable(f"connection error ({type(exc).__name__})", None) from None
        if response.status_code in RETRYABLE_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                retry_after = min(retry_after, self.settings.max_retry_after)
                if response.status_code == 429:
                    self.rate_gate.pause_for(retry_after)
            raise _Retryable(f"HTTP {response.status_code}", response.status_code, retry_after)
        return response

    def _prepare(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Mapping[str, Any] | None,
        headers: dict[str, str],
    ) -> requests.PreparedRequest:
        """The request as ``Session.request`` would prepare it. A GET reuses the session's
        headers and Cookie header from a template, made again once a response sets a cookie (a
        login does): merging them and building the header from the jar for every page was a
        third of the client's CPU per page."""
        if method != "GET" or json_body is not None:
            return self._http.prepare_request(
                requests.Request(
                    method,
                    self.settings.base_url + path,
                    params=params,
                    data=orjson.dumps(json_body) if json_body is not None else None,
                    headers=headers,
                )
            )
        version, template = self._get_template or (None, None)
        if template is None or version != self._cookies_version:
            # Tagged with the version seen before reading the jar: a cookie set meanwhile
            # makes the next request build it again.
            version = self._cookies_version
            template = self._http.prepare_request(
                requests.Request("GET", self.settings.base_url, headers=headers)
            )
            self._get_template = (version, template)
        prepared = requests.PreparedRequest()
        prepared.method = "GET"
        prepared.headers = template.headers.copy()
        prepared._cookies = template._cookies
        prepared.hooks = template.hooks
        prepared.url = self._page_url(path, params or {})
        prepared.prepare_body(None, None)
        return prepared

    def _page_url(self, path: str, params: Mapping[str, str]) -> str:
        """The URL requests would build, with the query of a list's pages encoded once:
        requests parses and re-quotes the whole URL for every request (5% of a sync's CPU)."""
        rest = tuple((key, value) for key, value in params.items() if key != "page")
        url = self._urls.get((path, rest))
        if url is None:
            if len(self._urls) >= 256:  # one per list and store read: a backfill reads many
                self._urls.clear()
            prepared = requests.PreparedRequest()
            prepared.prepare_url(self.settings.base_url + path, dict(rest))
            url = self._urls[(path, rest)] = prepared.url
        if "page" not in params:
            return url
        return url + ("&" if "?" in url else "?") + urlencode({"page": params["page"]})

    def _decode(
        self,
        response: requests.Response,
        *,
        path: str,
        what: str,
        decoder: PageDecoder | None = None,
    ) -> dict[str, Any] | DecodedPage:
        if response.status_code >= 400:
            raise ClientError(
                f"GET {path} ({what}) failed with HTTP {response.status_code}: "
                f"{_error_message(response.content)}",
                status=response.status_code,
            )
        content = response.content
        self.stats.add(bytes=len(content))
        if decoder is not None:
            decoded = decoder(content)
            if decoded is not None:
                return decoded
        payload, error = self._loads(content, path=path, what=what)
        if payload is _NOT_JSON:
            kind = response.headers.get("Content-Type", "no content type")
            raise _Retryable(
                f"HTTP 200 body is not JSON ({kind}, {len(content)} bytes: {error})",
                response.status_code,
            )
        if not isinstance(payload, dict):
            raise BadResponse(
                f"GET {path} ({what}): expected a JSON object, got {type(payload).__name__}"
            )
        return payload

    def _loads(self, content: bytes, *, path: str, what: str) -> tuple[Any, str | None]:
        """The body's JSON, and why orjson refused it: a body that is not strict JSON is
        decoded leniently, with a warning; ``_NOT_JSON`` if it is not JSON at all."""
        try:
            return orjson.loads(content), None
        except orjson.JSONDecodeError as exc:
            payload = lenient_json(content)
            if payload is not _NOT_JSON:
                self.stats.add(repaired_bodies=1)
                log.warning(
                    "GET %s (%s): the body is not strict JSON (%s); decoded leniently, invalid "
                    "characters replaced with U+FFFD",
                    path,
                    what,
                    exc,
                )
            return payload, str(exc)

    def parse_screened_page(self, page: Page, *, path: str, what: str) -> Page:
        """A screened page parsed the ordinary way (as :meth:`iter_pages` parses a page no
        decoder takes), for a caller whose own parse could not take its body. Too late to
        fetch it again: a body that is not JSON at all fails the caller, by page."""
        page_what = f"{what} page {page.number}"
        payload, error = self._loads(page.body or b"", path=path, what=page_what)
        if payload is _NOT_JSON:
            raise BadResponse(f"GET {path} ({page_what}): the body is not JSON ({error})")
        if not isinstance(payload, dict):
            raise BadResponse(
                f"GET {path} ({page_what}): expected a JSON object, got {type(payload).__name__}"
            )
        parsed = page_from_payload(payload, page.number, path=path, what=page_what)
        check_screened(page, not parsed.items, parsed.has_more_pages, path=path, what=what)
        return parsed

    def _with_retries(self, attempt: Callable[[], Any], *, what: str, path: str) -> Any:
        for number in itertools.count(1):
            try:
                return attempt()
            except _Retryable as exc:
                if number >= self.settings.max_attempts:
                    raise _exhausted(exc, path=path, what=what, attempts=number) from None
                delay = backoff_delay(
                    number,
                    self.settings.initial_retry_delay,
                    self.settings.max_retry_delay,
                    self._rng,
                )
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                self.stats.add(retries=1)
                log.debug(
                    "retrying %s (%s) after %s, attempt %d, in %.2fs",
                    path,
                    what,
                    exc.reason,
                    number,
                    delay,
                )
                self._sleep(delay)
        raise AssertionError("unreachable")

    # -- paging -------------------------------------------------------------------------------

    def fetch_page(
        self,
        path: str,
        params: Mapping[str, Any],
        number: int,
        *,
        what: str,
        decoder: PageDecoder | None = None,
        slots: RequestSlots | None = None,
    ) -> Page:
        """Fetch page ``number`` (0-based) of a ``List*`` operation with simplified paging."""
        page = None
        try:
            page = self._fetch_page(path, params, number, what=what, decoder=decoder, slots=slots)
            return page
        finally:
            if slots is not None:
                slots.finished(number, last=page is not None and page.is_last)

    def _fetch_page(
        self,
        path: str,
        params: Mapping[str, Any],
        number: int,
        *,
        what: str,
        decoder: PageDecoder | None,
        slots: RequestSlots | None,
    ) -> Page:
        page_what = f"{what} page {number}"
        payload = self._get(
            path,
            {
                **params,
                "page": number,
                "countPerPage": self.settings.page_size,
                "simplifiedPaging": True,
            },
            what=page_what,
            decoder=decoder,
            slot=None if slots is None else lambda: slots.hold(number),
        )
        if isinstance(payload, DecodedPage):
            self.stats.add(pages=1)
            return Page.of_decoded(number, payload)
        self.stats.add(pages=1)
        return page_from_payload(payload, number, path=path, what=page_what)

    def iter_pages(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        what: str,
        concurrency: int | None = None,
        decoder: PageDecoder | None = None,
        at_end: Callable[[], None] | None = None,
    ) -> Iterator[Page]:
        """Yield every page of a ``List*`` operation in page order, until an empty page or
        ``hasMorePages == false`` -- never because a page is shorter than asked (servers cap
        page sizes silently). ``at_end`` is called once, by a paging thread, as soon as every
        page up to the last one is in: before the caller has read them all.

        Up to ``concurrency`` requests are on the wire, started in page order; pages are decoded
        outside those slots and fetched ahead while the caller works on the page just yielded,
        so fetching, decoding and processing overlap even with one worker. Pages past the end
        are discarded, so the result does not depend on which request finishes first.
        """
        workers = max(1, concurrency or self.settings.concurrency)
        slots = RequestSlots(workers, at_end)
        ahead = 4 * workers  # pages fetched or decoded ahead of the caller: bounded memory
        with ThreadPoolExecutor(ahead, thread_name_prefix="evo-page") as pool:
            pending: dict[int, Future[Page]] = {}
            next_number = 0

            def submit_until(limit: int) -> None:
                nonlocal next_number
                while next_number < limit:
                    pending[next_number] = pool.submit(
                        self.fetch_page,
                        path,
                        params,
                        next_number,
                        what=what,
                        decoder=decoder,
                        slots=slots,
                    )
                    next_number += 1

            try:
                previous: list[Any] | bytes | None = None
                for number in range(MAX_PAGES):
                    submit_until(number + ahead)
                    page = pending.pop(number).result()
                    previous = _check_not_repeated(page, previous, path, what)
                    if page.is_last:
                        yield page
                        return
                    submit_until(number + 1 + ahead)
                    following = pending.get(number + 1)
                    yield replace(page, next_in=following is not None and following.done())
                raise BadResponse(f"GET {path} ({what}): more than {MAX_PAGES} pages")
            finally:
                slots.close()
                for future in pending.values():
                    future.cancel()

    def count(self, path: str, params: Mapping[str, Any], *, what: str) -> int | None:
        """The server's ``totalCount`` for a query (one tiny request without simplified paging)."""
        payload = self.get_json(
            path, {**params, "page": 0, "countPerPage": 1, "simplifiedPaging": False}, what=what
        )
        total = payload.get("totalCount")
        return total if isinstance(total, int) else None

    def iter_accounts(self) -> Iterator[dict[str, Any]]:
        """Every account visible to the user (``GET /accounts``), as raw JSON objects."""
        for page in self.iter_pages("/accounts", {}, what="accounts", concurrency=1):
            yield from page.items


def _session(base_url: str) -> requests.Session:
    """A session that reads the environment once, not per request.

    With ``trust_env`` on, requests looks up the proxy variables and ``~/.netrc`` for every
    request, about 0.3 ms each. The proxies and CA bundle for ``base_url`` are taken from the
    environment here instead; ``~/.netrc`` is ignored on purpose (the client sends the
    credentials it is given, and no others).
    """
    http = requests.Session()
    http.trust_env = False
    http.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        http.verify = bundle
    return http


def _read_body(response: requests.Response) -> None:
    """Read the whole body now, in one call, so that a body cut short or stalled is retried
    like a failed request (``response.content`` would read it later, outside the retries).

    ``response.content`` reads 10 KB at a time, each chunk a trip through urllib3 and a GIL
    hand-off; on 200 KB pages that was about a tenth of a sync's CPU. A connection error while
    reading is raised as requests raises it from ``content``.
    """
    if response._content is False:  # not read yet (an adapter may hand it over read)
        response._content = b"".join(response.iter_content(chunk_size=None))


def page_from_payload(payload: dict[str, Any], number: int, *, path: str, what: str) -> Page:
    """Page ``number`` of a list response parsed as JSON, after the checks every page gets."""
    status = payload.get("responseStatus")
    if isinstance(status, dict) and status.get("errorCode"):
        raise BadResponse(
            f"GET {path} ({what}): HTTP 200 carrying an error: "
            f"{str(status.get('errorCode'))[:80]} {str(status.get('message') or '')[:200]}"
        )
    if "items" not in payload and not PAGING_KEYS & payload.keys():
        raise BadResponse(
            f"GET {path} ({what}): not a list response (no 'items'; keys: "
            f"{', '.join(sorted(map(str, payload))[:10]) or 'none'})"
        )
    items = payload.get("items", [])
    if items is None:
        items = []
    if not isinstance(items, list):
        raise BadResponse(f"GET {path} ({what}): 'items' is {type(items).__name__}, not a list")
    has_more = payload.get("hasMorePages")
    total = payload.get("totalCount")
    return Page(
        number=number,
        items=items,
        has_more_pages=has_more if isinstance(has_more, bool) else None,
        total_count=total if isinstance(total, int) else None,
    )


def _check_not_repeated(
    page: Page, previous: list[Any] | bytes | None, path: str, what: str
) -> list[Any] | bytes:
    """A page that repeats the previous one: its ids, or for a screened page its very bytes
    (equal bytes mean equal ids; the ids are not known before the caller parses it)."""
    seen: list[Any] | bytes = (page.body or b"") if page.screened else page.item_ids()
    if previous is not None and seen and seen == previous and not page.is_last:
        raise repeated_page(path, what, page.number)
    return seen


def repeated_page(path: str, what: str, number: int) -> BadResponse:
    return BadResponse(
        f"GET {path} ({what} page {number}): the server returned the previous page again; it "
        "may not support the 'page' parameter"
    )


def check_screened(page: Page, empty: bool, more: bool | None, *, path: str, what: str) -> None:
    """Fail, by page, when a screened page's facts (empty? more pages?) disagree with its
    parse: the paging already acted on them."""
    if empty != page.empty or more is not page.has_more_pages:
        raise BadResponse(
            f"GET {path} ({what} page {page.number}): the paging facts read from the body "
            "disagree with its parse (a repeated key?)"
        )


def _exhausted(exc: _Retryable, *, path: str, what: str, attempts: int) -> RequestFailed:
    message = f"GET {path} ({what}) failed after {attempts} attempts: {exc.reason}"
    if exc.status == 429:
        return RateLimited(message, status=429)
    if exc.status is not None and exc.status >= 500:
        return ServerError(message, status=exc.status)
    if exc.status == 200:
        return BadResponse(message)
    return RequestFailed(message, status=exc.status)


_NOT_JSON = object()
_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64 = 2**63


def lenient_json(content: bytes) -> Any:
    """Parse a body orjson refuses because its text is not valid Unicode: lone UTF-16
    surrogates (which .NET strings may hold and ServiceStack writes as ``\\udXXX`` escapes),
    invalid UTF-8 or a byte order mark. Each invalid character becomes U+FFFD, so such a body
    decodes the same way however the bad character was written. Returns ``_NOT_JSON`` when the
    body is not JSON at all (truncated, HTML, nested too deeply)."""
    text = content.decode("utf-8", errors="replace").removeprefix("\ufeff")
    try:
        # Integers beyond 64 bits become floats, as orjson reads them.
        payload = json.loads(text, parse_int=lambda s: int(s) if abs(int(s)) < _INT64 else float(s))
        return _replace_surrogates(payload)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def _error_message(content: bytes) -> str:
    """The ServiceStack ``responseStatus.message`` of an error body, if there is one."""
    try:
        status = orjson.loads(content).get("responseStatus") or {}
        return str(status.get("message") or status.get("errorCode") or "")[:200]
    except (orjson.JSONDecodeError, AttributeError):
        return "(no ServiceStack error body)"
