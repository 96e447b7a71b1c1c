"""The HTTP side of the emulator: ServiceStack routes, auth, faults, stats, and the runners.

Routes -- the custom ones from the metadata pages, plus ServiceStack's predefined
``/json/reply/{Op}`` and ``/api/{Op}`` for every op, with any verb:

- ``POST|GET|DELETE /auth``, ``/auth/{provider}``: Authenticate (credentials, basic, logout).
- ``GET /auth/status``: GetAuthStatus (UserInfo; 204 No Content when anonymous).
- ``GET /sessions``: ListSessions. ``GET /sessions/{sessionId}``: GetSession, whose ``log`` is
  empty as on the real API.
- ``GET /accounts``, ``GET /accounts/{accountId}``: ListAccounts, GetAccount.
- ``GET /customers``, ``GET /endpoints``: ListCustomers, ListEndpoints.

``.json`` suffixes and ``?format=json`` are accepted; ``?callback=fn`` wraps JSON in JSONP.
"""

from __future__ import annotations

import base64
import contextlib
import math
import random
import secrets
import signal
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime, formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote
from zoneinfo import ZoneInfo

import orjson

from pipeline.emulator.config import SORT_FIELDS, EmulatorConfig
from pipeline.emulator.params import ApiError, RequestArgs, argument_error
from pipeline.emulator.store import EmulatorStore, SessionQuery
from pipeline.emulator.timefmt import TICKS_PER_SECOND, local_midnight_ticks, ticks_from_datetime

JSON_TYPE = "application/json; charset=utf-8"
DEFAULT_PAGE_SIZE = 25
SESSION_COOKIE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ROLES = ["SystemAdministrator"]
DASHBOARD_PERMISSIONS = [
    "ViewFiles",
    "ViewNotifications",
    "ViewSessions",
    "ViewEndpoints",
    "ViewReports",
    "ViewCustomers",
    "ViewFlows",
    "ViewCallCenter",
]
PROXY_PAGES = {
    502: b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n",
    503: b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head><body>"
    b"<h1>Service Unavailable</h1><p>The server is temporarily unable to service your request "
    b"due to maintenance downtime or capacity problems. Please try again later.</p>"
    b"</body></html>\n",
}
SERVER_ERRORS = (
    ("MongoConnectionException", "A timeout occurred after 30000ms selecting a server."),
    ("NullReferenceException", "Object reference not set to an instance of an object."),
    ("TimeoutException", "The operation has timed out."),
)
REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)


class _Drop(Exception):
    """Close the connection without answering."""


# -- stats --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    """One request as the emulator saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int | None
    fault: str | None
    at: float


class EmulatorStats:
    """Counters and a bounded log of requests, for assertions in tests and benchmarks."""

    def __init__(self, log_size: int) -> None:
        self._lock = threading.Lock()
        self._log_size = log_size
        self.reset()

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self.requests = 0
            self.by_status: Counter[int] = Counter()
            self.faults: Counter[str] = Counter()
            self.by_op: Counter[str] = Counter()
            self.sessions_served = 0
            self.logins = 0
            self.request_log: deque[RequestRecord] = deque(maxlen=self._log_size)

    def record(self, record: RequestRecord, op: str | None, items: int) -> None:
        with self._lock:
            self.requests += 1
            if record.status is not None:
                self.by_status[record.status] += 1
            if record.fault:
                self.faults[record.fault] += 1
            if op:
                self.by_op[op] += 1
            self.sessions_served += items
            self.request_log.append(record)

    @property
    def failed(self) -> int:
        """Requests that got an injected fault (see ``faults`` for the count per kind)."""
        with self._lock:
            return sum(self.faults.values())

    def requests_to(self, path: str) -> list[RequestRecord]:
        """Logged requests whose path is ``path``."""
        with self._lock:
            return [r for r in self.request_log if r.path == path]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "by_status": dict(self.by_status),
                "faults": dict(self.faults),
                "by_op": dict(self.by_op),
                "sessions_served": self.sessions_served,
                "logins": self.logins,
            }


# -- auth ---------------------------------------------------------------------------------------


@dataclass
class _AuthSession:
    session_id: str
    permanent_id: str
    remember: bool
    requests: int = 0


class AuthSessions:
    """Server-side login sessions keyed by the ``ss-id`` / ``ss-pid`` cookie values."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, _AuthSession] = {}

    @staticmethod
    def _new_id() -> str:
        return "".join(secrets.choice(SESSION_COOKIE_CHARS) for _ in range(20))

    def create(self, remember: bool, permanent_id: str | None) -> _AuthSession:
        session = _AuthSession(self._new_id(), permanent_id or self._new_id(), remember)
        with self._lock:
            self._by_id[session.session_id] = session
            if remember:
                self._by_id[session.permanent_id] = session
        return session

    def find(self, cookies: dict[str, str]) -> _AuthSession | None:
        with self._lock:
            # ServiceStack keys a remembered session by ss-pid, others by ss-id.
            if cookies.get("ss-opt") == "perm" and cookies.get("ss-pid") in self._by_id:
                return self._by_id[cookies["ss-pid"]]
            return self._by_id.get(cookies.get("ss-id", ""))

    def drop(self, session: _AuthSession) -> None:
        with self._lock:
            self._by_id.pop(session.session_id, None)
            if self._by_id.get(session.permanent_id) is session:
                del self._by_id[session.permanent_id]

    def count_request(self, session: _AuthSession, limit: int | None) -> bool:
        """Count one authenticated request; False once the session has expired."""
        with self._lock:
            session.requests += 1
            return limit is None or session.requests <= limit


def _cookie(name: str, value: str, *, permanent: bool = False, expire: bool = False) -> str:
    parts = [f"{name}={value}", "path=/", "samesite=strict", "httponly"]
    if permanent:
        parts.insert(1, "expires=" + formatdate(time.time() + 20 * 365 * 86400, usegmt=True))
    if expire:
        parts.insert(1, "expires=Thu, 01 Jan 1970 00:00:00 GMT")
    return "; ".join(parts)


def _parse_cookies(header: str | None) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            cookies[name.strip()] = value.strip()
    return cookies


# -- the application ----------------------------------------------------------------------------

CUSTOM_ROUTES: list[tuple[tuple[str, ...], frozenset[str], str, str | None]] = [
    # (path segments, verbs, op, name of the path variable)
    (("auth", "status"), frozenset({"GET", "POST"}), "getauthstatus", None),
    (("auth",), frozenset({"GET", "POST", "DELETE"}), "authenticate", None),
    (("auth", "*"), frozenset({"GET", "POST", "DELETE"}), "authenticate", "provider"),
    (("sessions",), frozenset({"GET"}), "listsessions", None),
    (("sessions", "*"), frozenset({"GET"}), "getsession", "sessionId"),
    (("accounts",), frozenset({"GET"}), "listaccounts", None),
    (("accounts", "*"), frozenset({"GET"}), "getaccount", "accountId"),
    (("customers",), frozenset({"GET"}), "listcustomers", None),
    (("endpoints",), frozenset({"GET"}), "listendpoints", None),
]
OP_NAMES = {
    "authenticate": "Authenticate",
    "getauthstatus": "GetAuthStatus",
    "listsessions": "ListSessions",
    "getsession": "GetSession",
    "listaccounts": "ListAccounts",
    "getaccount": "GetAccount",
    "listcustomers": "ListCustomers",
    "listendpoints": "ListEndpoints",
}
ANONYMOUS_OPS = frozenset({"authenticate", "getauthstatus"})


def route(method: str, path: str) -> tuple[str, dict[str, str]]:
    """Map a request to ``(op, path variables)``; raises a 404 ApiError when nothing matches."""
    clean = path.rstrip("/") or "/"
    if clean.lower().endswith(".json"):
        clean = clean[:-5]
    parts = [unquote(p) for p in clean.strip("/").split("/") if p]
    lowered = [p.lower() for p in parts]
    if (len(parts) == 3 and lowered[0] == "json" and lowered[1] in ("reply", "syncreply")) or (
        len(parts) == 2 and lowered[0] == "api"
    ):
        op = lowered[-1]
        if op in OP_NAMES:
            return op, {}
    else:
        for pattern, verbs, op, variable in CUSTOM_ROUTES:
            if len(pattern) != len(parts):
                continue
            if all(p == "*" or p == seg for p, seg in zip(pattern, lowered, strict=True)):
                if method not in verbs:
                    continue
                return op, ({variable: parts[-1]} if variable else {})
    raise ApiError(
        404,
        "NotFound",
        f"Handler for Request not found (404):\n\n  Request.HttpMethod: {method}\n"
        f"  Request.PathInfo: {path}\n  Request.QueryString: \n",
    )


class EvoVoiceEmulator:
    """The emulated service, independent of the socket layer: ``handle()`` one request."""

    def __init__(self, config: EmulatorConfig, store: EmulatorStore | None = None) -> None:
        self.config = config
        self.store = store or EmulatorStore(config)
        self.stats = EmulatorStats(config.request_log_size)
        self.auth = AuthSessions()
        self.stopping = threading.Event()
        self._fault_lock = threading.Lock()
        self._fault_rng = random.Random(f"evo-emulator/faults/{config.fault_seed}")
        self._fault_seed = config.fault_seed
        self._latency_rng = random.Random(f"evo-emulator/latency/{config.fault_seed}")
        self._last_clock_check = 0.0

    # -- entry point -------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[Response, str | None, int, str | None]:
        """Answer one request: ``(response, op, sessions served, fault)``.

        Raises _Drop when the connection should be closed without an answer.
        """
        path, _, query = target.partition("?")
        if method == "OPTIONS":
            # CORS preflight, answered before auth like ServiceStack's CorsFeature does.
            allow = [("Allow", "GET, POST, PUT, DELETE, PATCH, OPTIONS")]
            return Response(200, b"", headers=allow), None, 0, None
        self._sleep_latency()
        op: str | None = None
        path_vars: dict[str, str] = {}
        routing_error: ApiError | None = None
        try:
            op, path_vars = route(method, path)
        except ApiError as error:
            routing_error = error
        fault = None
        if op not in ANONYMOUS_OPS or self.config.faults_on_auth_routes:
            fault = self._draw_fault()
            if fault == "stall":
                # Answer normally, but only after the client has (usually) given up.
                self.stopping.wait(self.config.stall_seconds)
            elif fault is not None:
                return self._fault_response(fault), op, 0, fault
        if routing_error is not None:
            return _error_response(routing_error), None, 0, fault
        assert op is not None
        self._follow_clock()
        args = RequestArgs(OP_NAMES[op])
        args.add_query(query)
        if method in ("POST", "PUT", "PATCH"):
            args.add_body(body, headers.get("content-type", "application/json"))
        for name, value in path_vars.items():
            args.set(name, value)
        try:
            response, items = self._dispatch(op, method, args, headers)
        except ApiError as error:
            response, items = _error_response(error), 0
        rewrite = self.config.rewrite_sessions_page
        if rewrite is not None and op == "listsessions" and response.status == 200:
            response.body = rewrite(args.int("page", 0), response.body)
        callback = args.str("callback")
        if callback and response.status == 200 and response.content_type == JSON_TYPE:
            response.body = callback.encode() + b"(" + response.body + b")"
            response.content_type = "application/javascript"
        return response, op, items, fault

    def _dispatch(
        self, op: str, method: str, args: RequestArgs, headers: dict[str, str]
    ) -> tuple[Response, int]:
        cookies = _parse_cookies(headers.get("cookie"))
        if op == "authenticate":
            return self._authenticate(method, args, headers, cookies), 0
        authenticated = self._identify(headers, cookies, strict=op not in ANONYMOUS_OPS)
        if op == "getauthstatus":
            if not authenticated:
                return Response(204), 0
            return _json(200, self._user_info()), 0
        if op == "listsessions":
            return self._list_sessions(args)
        if op == "getsession":
            return self._get_session(args), 1
        if op == "listaccounts":
            return self._list_entities(args, self.store.accounts(), "name", _account_filter)
        if op == "getaccount":
            account_id = args.str("accountId") or args.str("id") or ""
            for account in self.store.accounts():
                if account["id"] == account_id:
                    return _json(200, account), 0
            raise ApiError(404, "NotFound", f"Account '{account_id}' not found")
        if op == "listcustomers":
            return self._list_entities(args, self.store.customers(), "name", _customer_filter)
        if op == "listendpoints":
            entities = self.store.endpoints()
            return self._list_entities(args, entities, "displayName", _endpoint_filter)
        raise ApiError(404, "NotFound", f"Unknown operation {op}")

    # -- auth --------------------------------------------------------------------------------

    def _check_basic(self, header: str) -> bool | None:
        """True/False for a Basic header with right/wrong credentials; None if not Basic."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(token.strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return self._credentials_ok(user, password)

    def _credentials_ok(self, user: str | None, password: str | None) -> bool:
        return secrets.compare_digest(
            (user or "").lower(), self.config.username.lower()
        ) and secrets.compare_digest(password or "", self.config.password)

    def _identify(self, headers: dict[str, str], cookies: dict[str, str], *, strict: bool) -> bool:
        """Whether the caller is logged in (Basic or session cookie).

        With ``strict``, an anonymous caller gets a 401 instead of False.
        """
        authorization = headers.get("authorization")
        if authorization:
            basic = self._check_basic(authorization)
            if basic:
                return True
            if basic is False or strict:
                raise _unauthorized("Invalid BasicAuth Credentials" if basic is False else None)
        session = self.auth.find(cookies)
        if session is not None:
            if self.auth.count_request(session, self.config.cookie_expiry_requests):
                return True
            self.auth.drop(session)
        if strict:
            raise _unauthorized(None)
        return False

    def _authenticate(
        self, method: str, args: RequestArgs, headers: dict[str, str], cookies: dict[str, str]
    ) -> Response:
        provider = (args.str("provider") or "").lower()
        if method == "DELETE" or provider == "logout":
            session = self.auth.find(cookies)
            if session is not None:
                self.auth.drop(session)
            response = _json(200, {})
            response.headers.extend(
                ("Set-Cookie", _cookie(name, "", expire=True)) for name in ("ss-id", "ss-pid")
            )
            return response
        if provider == "basic":
            ok = self._check_basic(headers.get("authorization", ""))
            if not ok:
                raise _unauthorized("Invalid BasicAuth Credentials")
            return self._logged_in(True, cookies)
        if provider not in ("", "credentials"):
            raise ApiError(
                404, "NotFound", f"No configuration was added for OAuth provider '{provider}'"
            )
        user = args.str("userName") or args.str("username") or args.str("email")
        password = args.raw("password")
        if user is None and password is None:
            if provider == "" and method == "GET":
                # GET /auth reports the current session, or 401.
                session = self.auth.find(cookies)
                if session is None:
                    raise _unauthorized(None)
                return _json(200, self._auth_response(session.session_id))
            raise ApiError(
                400,
                "ValidationException",
                "'User Name' must not be empty.",
                [
                    {
                        "errorCode": "NotEmpty",
                        "fieldName": "UserName",
                        "message": "'User Name' must not be empty.",
                    }
                ],
            )
        remember = args.bool("rememberMe")
        args.raise_binding_errors()
        if not self._credentials_ok(user, password):
            raise ApiError(401, "Unauthorized", "Invalid UserName or Password")
        return self._logged_in(remember, cookies)

    def _logged_in(self, remember: bool, cookies: dict[str, str]) -> Response:
        session = self.auth.create(remember, cookies.get("ss-pid"))
        with self.stats._lock:
            self.stats.logins += 1
        response = _json(200, self._auth_response(session.session_id))
        response.headers.append(("Set-Cookie", _cookie("ss-id", session.session_id)))
        response.headers.append(
            ("Set-Cookie", _cookie("ss-pid", session.permanent_id, permanent=True))
        )
        if remember:
            response.headers.append(("Set-Cookie", _cookie("ss-opt", "perm", permanent=True)))
        return response

    def _auth_response(self, session_id: str) -> dict[str, Any]:
        return {
            "userId": self.store.world.user_id,
            "sessionId": session_id,
            "userName": self.config.username,
            "displayName": "Demo Administrator",
            "profileUrl": "data:image/svg+xml,<svg></svg>",
            "roles": list(ROLES),
            "permissions": [],
        }

    def _user_info(self) -> dict[str, Any]:
        accounts = self.store.world.accounts
        return {
            "id": self.store.world.user_id,
            "isAuthenticated": True,
            "firstName": "Demo",
            "lastName": "Administrator",
            "name": "Demo Administrator",
            "avatarUrl": None,
            "emailAddress": self.config.username,
            "roles": list(ROLES),
            "accountIds": [a.id for a in accounts],
            "accountNames": [a.name for a in accounts],
            "managerAccess": "ReadWriteDelete",
            "dashboardPermissions": list(DASHBOARD_PERMISSIONS),
        }

    # -- sessions ----------------------------------------------------------------------------

    def _list_sessions(self, args: RequestArgs) -> tuple[Response, int]:
        config = self.config
        page = args.int("page", 0)
        count = args.int("countPerPage", 0)
        fetch_all = args.bool("all")
        simplified = args.bool("simplifiedPaging")
        sort_field_raw = args.str("sortField")
        sort_order = args.enum("sortOrder", ("Ascend", "Descend"))
        search_archive = args.bool("searchArchive")
        account_ids = args.list("accountIds")
        customer_ids = args.list("customerIds")
        endpoint_ids = args.list("endpointIds")
        specific_ids = args.list("specificIds")
        args.raise_binding_errors()
        assert page is not None and count is not None
        if page < 0:
            raise argument_error("Page", "Page must be 0 or greater")
        if count < 0:
            raise argument_error("CountPerPage", "CountPerPage must be 0 or greater")
        count = count or DEFAULT_PAGE_SIZE
        if config.max_count_per_page is not None and count > config.max_count_per_page:
            raise argument_error(
                "CountPerPage", f"CountPerPage may not exceed {config.max_count_per_page}"
            )
        if config.page_size_cap is not None:
            count = min(count, config.page_size_cap)

        if sort_field_raw is None:
            sort_field = config.default_sort_field
            descending = (sort_order or config.default_sort_order) == "Descend"
        else:
            matches = [f for f in SORT_FIELDS if f.lower() == sort_field_raw.strip().lower()]
            if not matches:
                raise argument_error(
                    "SortField",
                    f"Invalid sort field '{sort_field_raw}'. Valid: {', '.join(SORT_FIELDS)}",
                )
            sort_field = matches[0]
            descending = sort_order == "Descend"

        range_lo, range_hi = self._date_range(args.str("startDate"), args.str("endDate"))

        def lowered(name: str) -> str | None:
            value = args.str(name)
            return value.lower() if value else None

        query = SessionQuery(
            account_ids=frozenset(account_ids) if account_ids else None,
            customer_ids=frozenset(customer_ids) if customer_ids else None,
            endpoint_ids=frozenset(endpoint_ids) if endpoint_ids else None,
            specific_ids=frozenset(specific_ids) if specific_ids else None,
            from_text=lowered("from"),
            to_text=lowered("to"),
            log_text=lowered("log"),
            parent_session_id=args.str("parentSessionId"),
            search_archive=search_archive,
            range_lo=range_lo,
            range_hi=range_hi,
            date_field=config.date_filter_field,
            sort_field=sort_field,
            descending=descending,
            shuffled=not config.honour_sort,
        )
        if config.drift_per_request:
            self.store.drift(query, config.drift_per_request, config.drift_mode)
        records = self.store.query(query)
        total = len(records)
        if fetch_all:
            items = records
            has_more = False
        else:
            offset = page * count
            items = records[offset : offset + count]
            has_more = offset + len(items) < total
        total_count = 0 if simplified else total
        total_pages = 0 if simplified else (1 if fetch_all and total else math.ceil(total / count))
        body = b"".join(
            (
                b'{"items":[',
                b",".join([r.raw for r in items]),
                b'],"totalCount":%d,"totalPages":%d,"hasMorePages":%s}'
                % (total_count, total_pages, b"true" if has_more else b"false"),
            )
        )
        return Response(200, body), len(items)

    def _date_range(self, start: str | None, end: str | None) -> tuple[int | None, int | None]:
        """Instant bounds [lo, hi) for startDate/endDate, read in the configured zone."""
        tz = self.config.date_filter_tz
        lo = hi = None
        if start is not None:
            lo = _parse_bound(start, "StartDate", tz, end_of_day=False)
        if end is not None:
            hi = _parse_bound(end, "EndDate", tz, end_of_day=self.config.end_date_inclusive)
        return lo, hi

    def _get_session(self, args: RequestArgs) -> Response:
        session_id = args.str("sessionId") or args.str("id") or ""
        record = self.store.record(session_id)
        # The live store does not hold archived sessions: a known id 404s once archived.
        if record is None or record.created < self.store.archive_cutoff_ticks():
            raise ApiError(404, "NotFound", f"Session '{session_id}' not found")
        doc = orjson.loads(record.raw)
        if "log" in doc:
            doc["log"] = []  # GetSession returns an empty log; only ListSessions fills it
        return _json(200, doc)

    # -- other lists -------------------------------------------------------------------------

    def _list_entities(
        self, args: RequestArgs, entities: list[dict], default_sort: str, keep
    ) -> tuple[Response, int]:
        page = args.int("page", 0)
        count = args.int("countPerPage", 0)
        fetch_all = args.bool("all")
        simplified = args.bool("simplifiedPaging")
        specific = args.list("specificIds")
        sort_field = args.str("sortField")
        sort_order = args.enum("sortOrder", ("Ascend", "Descend"))
        selected = [e for e in entities if keep(e, args)]
        args.raise_binding_errors()
        assert page is not None and count is not None
        if page < 0:
            raise argument_error("Page", "Page must be 0 or greater")
        count = count or DEFAULT_PAGE_SIZE
        if self.config.page_size_cap is not None:
            count = min(count, self.config.page_size_cap)
        if specific:
            wanted = set(specific)
            selected = [e for e in selected if e["id"] in wanted]
        field_name = default_sort
        if sort_field and selected:
            wanted = sort_field.lower()
            field_name = next((k for k in selected[0] if k.lower() == wanted), default_sort)
        selected.sort(key=lambda e: str(e.get(field_name) or ""), reverse=sort_order == "Descend")
        total = len(selected)
        offset = page * count
        items = selected if fetch_all else selected[offset : offset + count]
        return (
            _json(
                200,
                {
                    "items": items,
                    "totalCount": 0 if simplified else total,
                    "totalPages": 0 if simplified else math.ceil(total / count),
                    "hasMorePages": not fetch_all and offset + len(items) < total,
                },
            ),
            0,
        )

    # -- faults, latency, clock --------------------------------------------------------------

    def _sleep_latency(self) -> None:
        delay = self.config.latency_ms
        if self.config.latency_jitter_ms:
            with self._fault_lock:
                delay += self._latency_rng.random() * self.config.latency_jitter_ms
        if delay > 0:
            self.stopping.wait(delay / 1000.0)

    def _draw_fault(self) -> str | None:
        rates = self.config.fault_rates()
        if not any(rates.values()):
            return None
        with self._fault_lock:
            if self._fault_seed != self.config.fault_seed:
                self._fault_seed = self.config.fault_seed
                self._fault_rng = random.Random(f"evo-emulator/faults/{self._fault_seed}")
            draw = self._fault_rng.random()
        for kind, rate in rates.items():
            if draw < rate:
                return kind
            draw -= rate
        return None

    def _fault_response(self, kind: str) -> Response:
        if kind == "drop":
            raise _Drop
        if kind == "500":
            code, message = SERVER_ERRORS[self.stats.requests % len(SERVER_ERRORS)]
            return _error_response(ApiError(500, code, message))
        retry_after = self._retry_after()
        if kind == "429":
            response = _error_response(
                ApiError(429, "TooManyRequests", "Too many requests. Please slow down.")
            )
            response.headers.append(("Retry-After", retry_after))
            return response
        status = int(kind)
        response = Response(status, PROXY_PAGES[status], "text/html")
        if status == 503:
            response.headers.append(("Retry-After", retry_after))
        return response

    def _retry_after(self) -> str:
        seconds = self.config.retry_after_seconds
        if self.config.retry_after_http_date:
            return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)
        return str(seconds)

    def _follow_clock(self) -> None:
        if not self.config.live_clock:
            return
        wall = time.time()
        if wall - self._last_clock_check < 60:
            return
        self._last_clock_check = wall
        now = datetime.now(UTC).replace(microsecond=0)
        if ticks_from_datetime(now) - self.store.now_ticks >= 60 * TICKS_PER_SECOND:
            self.store.set_now(now)


def _parse_bound(value: str, field_name: str, tz: str, *, end_of_day: bool) -> int:
    text = value.strip()
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is not None:
        return local_midnight_ticks(day + timedelta(days=1) if end_of_day else day, tz)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argument_error(
            field_name, f"String '{value}' was not recognized as a valid DateTime."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return ticks_from_datetime(moment) + (1 if end_of_day else 0)


def _account_filter(entity: dict, args: RequestArgs) -> bool:
    name = args.str("nameFilter")
    return not name or name.lower() in (entity.get("name") or "").lower()


def _customer_filter(entity: dict, args: RequestArgs) -> bool:
    accounts = args.list("accountIds")
    if accounts and entity["accountId"] not in accounts:
        return False
    if args.list("tagIds"):
        return False  # generated customers carry no tags, and all listed tags must match
    parents = args.list("parentCustomerIds")
    if parents:
        if args.bool("shallowParent"):
            if entity.get("parentCustomerId") not in parents:
                return False
        elif not any(c["id"] in parents for c in entity["breadcrumb"][:-1]):
            return False
    return _account_filter(entity, args)


def _endpoint_filter(entity: dict, args: RequestArgs) -> bool:
    accounts = args.list("accountIds")
    if accounts and entity["accountId"] not in accounts:
        return False
    customers = args.list("customerIds")
    if customers:
        trail = entity["customerBreadcrumb"]
        scope = trail[-1:] if args.bool("shallowParent") else trail
        if not any(c["id"] in customers for c in scope):
            return False
    types = (args.list("types") or []) + ([args.str("type")] if args.str("type") else [])
    if types and entity["type"].lower() not in {t.lower() for t in types}:
        return False
    name = args.str("nameFilter")
    if name and name.lower() not in (entity.get("displayName") or "").lower():
        return False
    number = args.str("phoneNumberFilter")
    return not number or number in (entity.get("phoneNumber") or "")


def _json(status: int, payload: Any) -> Response:
    return Response(status, orjson.dumps(payload))


def _error_response(error: ApiError) -> Response:
    response = Response(error.status, error.body())
    response.headers.extend(error.headers.items())
    return response


def _unauthorized(message: str | None) -> ApiError:
    return ApiError(
        401,
        "Unauthorized",
        message or "Not Authenticated",
        headers={"WWW-Authenticate": 'basic realm="/auth/basic"'},
    )


# -- socket layer -------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Kestrel"
    sys_version = ""
    # Idle keep-alive connections are closed after this long; stop() closes them at once.
    timeout = 120

    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in one write, but small pages still benefit from no Nagle.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the stats object is the log

    def _serve(self) -> None:
        app = self.server.app
        started = time.monotonic()
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self._read_body(headers)
        path, _, query = self.path.partition("?")
        response: Response | None = None
        op = fault = None
        items = 0
        try:
            response, op, items, fault = app.handle(self.command, self.path, headers, body)
        except _Drop:
            fault = "drop"
        except Exception as exc:  # a bug in the emulator: still answer like ServiceStack
            response = _error_response(ApiError(500, type(exc).__name__, str(exc)))
        # Recorded before answering, so a test that has its response also sees it counted.
        app.stats.record(
            RequestRecord(
                method=self.command,
                path=path,
                query=parse_qs(query, keep_blank_values=True),
                status=response.status if response else None,
                fault=fault,
                at=started,
            ),
            OP_NAMES.get(op or ""),
            items if response is not None and response.status == 200 else 0,
        )
        if response is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self._write(response)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _write(self, response: Response) -> None:
        lines = [
            f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Error')}",
            f"Date: {formatdate(usegmt=True)}",
            "Server: Kestrel",
            "X-Powered-By: ServiceStack/8.5 NetCore/Linux",
            "Vary: Accept",
            "Cache-Control: private",
        ]
        if response.status != 204:
            lines.append(f"Content-Type: {response.content_type}")
            lines.append(f"Content-Length: {len(response.body)}")
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + (b"" if response.status == 204 else response.body))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # joined in server_close(), after stop() unblocks them
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: EvoVoiceEmulator) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


# -- runners ------------------------------------------------------------------------------------


class RunningEmulator:
    """A live emulator on a background thread. Use :func:`run_emulator` to get one."""

    def __init__(self, config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.app = EvoVoiceEmulator(config)
        self.store = self.app.store
        self.stats = self.app.stats
        self._server = _Server((host, port), self.app)
        self.host, self.port = self._server.server_address[:2]
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"evo-emulator:{self.port}",
            daemon=True,
        )

    def start(self) -> RunningEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join every thread."""
        self.app.stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.close_connections()
        self._server.server_close()

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def run_emulator(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningEmulator]:
    """Serve the emulator on ``host:port`` (default: a free port on 127.0.0.1) while the
    ``with`` block runs.

    Example::

        with run_emulator(EmulatorConfig(sessions_per_day=500)) as emu:
            requests.get(f"{emu.base_url}/sessions", auth=(emu.config.username,
                         emu.config.password))
    """
    emulator = RunningEmulator(config or EmulatorConfig(), host, port).start()
    try:
        yield emulator
    finally:
        emulator.stop()


def serve_forever(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8000
) -> None:
    """Serve the emulator in the foreground until interrupted (Ctrl-C, SIGTERM)."""
    config = config or EmulatorConfig()
    emulator = RunningEmulator(config, host, port)
    print(
        f"Evo Voice emulator on {emulator.base_url}  user={config.username} "
        f"password={config.password}  ({config.sessions_per_day} sessions/day, "
        f"seed {config.seed})",
        flush=True,
    )
    stop_requested: list[int] = []
    if threading.current_thread() is threading.main_thread():
        # The handlers only note the signal (no lock, no exception): a KeyboardInterrupt
        # raised into the main thread can land inside Thread.is_alive() or join() and leave
        # the serving thread's state lock released or held wrongly, and stop() then hung
        # (once in CI, over 60 s). A process started in the background by a non-interactive
        # shell inherits SIGINT ignored; a foreground server must still stop on Ctrl-C.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda number, _frame: stop_requested.append(number))
    emulator.start()
    try:
        while not stop_requested and emulator._thread.is_alive():
            time.sleep(0.2)
    finally:
        emulator.stop()
        print("Evo Voice emulator stopped", file=sys.stderr, flush=True)
