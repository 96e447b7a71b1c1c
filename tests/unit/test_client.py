"""Client decisions without a server: paging termination, retries, Retry-After, re-login,
bad bodies, and that errors never carry the password."""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from email.utils import formatdate
from typing import ClassVar
from urllib.parse import parse_qsl, urlparse

import pytest
import requests
from requests.adapters import BaseAdapter

from pipeline.evo.client import (
    DecodedPage,
    EvoVoiceClient,
    Page,
    PagingStopped,
    RateGate,
    RequestSlots,
    backoff_delay,
    parse_retry_after,
)
from pipeline.evo.errors import AuthError, BadResponse, ClientError, RateLimited, ServerError
from pipeline.evo.settings import EvoVoiceSettings

PASSWORD = "s3cret-Pa55word!"


class ScriptedAdapter(BaseAdapter):
    """Answers each request with the next scripted (status, body, headers) or raises."""

    def __init__(self, handler: Callable[[requests.PreparedRequest], object]):
        super().__init__()
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.requests.append(request)
        answer = self.handler(request)
        if isinstance(answer, Exception):
            raise answer
        status, body, headers = answer
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.headers.update(headers or {})
        response.request = request
        response.url = request.url
        return response

    def close(self):
        pass


def make_client(handler, **overrides) -> tuple[EvoVoiceClient, ScriptedAdapter, list[float]]:
    settings = EvoVoiceSettings(
        base_url="http://evo.test",
        username="ops@example.com",
        password=PASSWORD,
        concurrency=1,
        initial_retry_delay=0.01,
        max_retry_delay=0.05,
        **overrides,
    )
    sleeps: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:  # a fake clock: tests never really wait
        sleeps.append(seconds)
        clock[0] += seconds

    client = EvoVoiceClient(
        settings, sleep=sleep, seed=1, rate_gate=RateGate(clock=lambda: clock[0])
    )
    adapter = ScriptedAdapter(handler)
    client._http.mount("http://", adapter)
    return client, adapter, sleeps


def page_handler(pages: list[dict], login_status: int = 200):
    def handler(request):
        if request.path_url.startswith("/auth/credentials"):
            return (login_status, {"sessionId": "abc"}, {"Set-Cookie": "ss-id=abc; path=/"})
        query = dict(parse_qsl(urlparse(request.url).query))
        number = int(query.get("page", 0))
        return (200, pages[number] if number < len(pages) else {"items": []}, None)

    return handler


def items(*ids):
    return [{"id": i} for i in ids]


class TestPaging:
    def test_stops_on_has_more_pages_false(self):
        pages = [
            {"items": items("a", "b"), "hasMorePages": True},
            {"items": items("c"), "hasMorePages": False},
        ]
        client, adapter, _ = make_client(page_handler(pages))
        got = [p.items for p in client.iter_pages("/sessions", {}, what="t")]
        assert got == [items("a", "b"), items("c")]
        # Fetching runs ahead of decoding: at most one request (one worker) past the end.
        numbers = [r.url for r in adapter.requests if "/sessions" in r.url]
        assert 2 <= len(numbers) <= 3
        assert all("page=2" in url for url in numbers[2:])

    def test_stops_on_empty_page_when_has_more_is_absent(self):
        pages = [{"items": items("a")}, {"items": items("b")}, {"items": []}]
        client, _, _ = make_client(page_handler(pages))
        assert len(list(client.iter_pages("/sessions", {}, what="t"))) == 3

    def test_short_page_is_not_the_end(self):
        # A server capping countPerPage at 2 while we ask for 100 keeps paging.
        pages = [
            {"items": items("a", "b"), "hasMorePages": True},
            {"items": items("c", "d"), "hasMorePages": True},
            {"items": items("e"), "hasMorePages": False},
        ]
        client, _, _ = make_client(page_handler(pages), page_size=100)
        ids = [i["id"] for p in client.iter_pages("/sessions", {}, what="t") for i in p.items]
        assert ids == ["a", "b", "c", "d", "e"]

    def test_null_items_is_an_empty_page(self):
        client, _, _ = make_client(page_handler([{"items": None, "hasMorePages": True}]))
        assert [p.items for p in client.iter_pages("/sessions", {}, what="t")] == [[]]

    def test_sends_zero_based_simplified_paging(self):
        client, adapter, _ = make_client(page_handler([{"items": []}]))
        list(client.iter_pages("/sessions", {"accountIds": ["a", "b"]}, what="t"))
        url = next(r.url for r in adapter.requests if "/sessions" in r.url)
        assert "page=0" in url and "simplifiedPaging=true" in url
        assert "countPerPage=100" in url and "accountIds=a%2Cb" in url

    def test_page_urls_carry_what_requests_would_encode(self):
        """The query of a list is encoded once and each page appends its number: the same
        parameters and values as requests' own encoding, whatever the characters."""
        client, _, _ = make_client(page_handler([]))
        params = {
            "startDate": "2026-11-27",
            "accountIds": "AC1,AC 2,é&x=1",
            "from": "+1 (555) 010-9999",
            "simplifiedPaging": "true",
        }
        for page in ("0", "7"):
            url = client._page_url("/sessions", {**params, "page": page})
            reference = requests.PreparedRequest()
            reference.prepare_url("http://evo.test/sessions", {**params, "page": page})
            assert urlparse(url).path == "/sessions"
            assert sorted(parse_qsl(urlparse(url).query)) == sorted(
                parse_qsl(urlparse(reference.url).query)
            )
            assert dict(parse_qsl(urlparse(url).query)) == {**params, "page": page}

    def test_server_ignoring_page_parameter_is_detected(self):
        same = {"items": items("a", "b"), "hasMorePages": True}
        client, _, _ = make_client(page_handler([same] * 5))
        with pytest.raises(BadResponse, match="previous page again"):
            list(client.iter_pages("/sessions", {}, what="day 2026-11-28"))

    def test_concurrent_paging_yields_in_order_and_stops(self):
        pages = [{"items": items(str(n)), "hasMorePages": n < 9} for n in range(10)]
        client, _, _ = make_client(page_handler(pages))
        got = [p.number for p in client.iter_pages("/sessions", {}, what="t", concurrency=4)]
        assert got == list(range(10))

    def test_items_not_a_list_names_day_and_page(self):
        client, _, _ = make_client(page_handler([{"items": {"id": "a"}}]))
        with pytest.raises(BadResponse, match=r"day 2026-11-28 page 0.*not a list"):
            list(client.iter_pages("/sessions", {}, what="day 2026-11-28"))


def screen(body: bytes) -> DecodedPage:
    """A decoder that only screens: the paging facts, no parse (as the sessions' screen)."""
    payload = json.loads(body)
    return DecodedPage(
        columns=None,
        ids=None,
        has_more_pages=payload.get("hasMorePages"),
        total_count=None,
        body=body,
        empty=not payload["items"],
    )


class TestScreenedPages:
    def test_screened_pages_come_unparsed_in_order_and_the_last_one_stops_the_paging(self):
        pages = [{"items": items(str(n)), "hasMorePages": n < 9} for n in range(10)]
        client, adapter, _ = make_client(page_handler(pages))
        got = list(client.iter_pages("/sessions", {}, what="t", concurrency=4, decoder=screen))
        assert [p.number for p in got] == list(range(10))
        assert all(p.screened and p.count is None and p.items == [] for p in got)
        assert [json.loads(p.body)["items"] for p in got] == [items(str(n)) for n in range(10)]
        queries = [dict(parse_qsl(urlparse(r.url).query)) for r in adapter.requests]
        pages_asked = [int(q["page"]) for q in queries if "page" in q]
        assert max(pages_asked) <= 9 + 4  # at most one request per worker past the end

    @pytest.mark.parametrize("workers", [1, 4])
    def test_at_end_is_called_once_when_every_page_up_to_the_last_is_in(self, workers):
        pages = [{"items": items(str(n)), "hasMorePages": n < 9} for n in range(10)]
        served: set[int] = set()
        serve = page_handler(pages)

        def handler(request):
            served.add(int(dict(parse_qsl(urlparse(request.url).query)).get("page", -1)))
            return serve(request)

        client, _, _ = make_client(handler)
        calls: list[bool] = []  # at each call: had every page 0..9 been answered?
        seen_before_end: list[int] = []

        def at_end() -> None:
            calls.append(set(range(10)) <= served)

        for page in client.iter_pages(
            "/sessions", {}, what="t", concurrency=workers, decoder=screen, at_end=at_end
        ):
            if not calls:
                seen_before_end.append(page.number)
        assert calls == [True]
        assert 9 not in seen_before_end  # called before the caller got the last page

    def test_an_empty_screened_page_ends_the_list_whatever_it_says_of_more_pages(self):
        pages = [{"items": items("a"), "hasMorePages": True}, {"items": [], "hasMorePages": True}]
        client, _, _ = make_client(page_handler(pages))
        got = list(client.iter_pages("/sessions", {}, what="t", decoder=screen))
        assert [(p.number, p.empty, p.is_last) for p in got] == [(0, False, False), (1, True, True)]

    def test_a_server_ignoring_the_page_parameter_is_detected_from_the_bytes(self):
        same = {"items": items("a", "b"), "hasMorePages": True}
        client, _, _ = make_client(page_handler([same] * 5))
        with pytest.raises(BadResponse, match=r"page 1.*previous page again"):
            list(client.iter_pages("/sessions", {}, what="day 2026-11-28", decoder=screen))

    @staticmethod
    def screened(body: bytes, *, empty: bool = False, more: bool = True) -> Page:
        return Page(
            number=3, items=[], has_more_pages=more, total_count=None, body=body, empty=empty
        )

    def test_parsing_a_screened_page_the_ordinary_way(self):
        body = json.dumps({"items": items("a", "b"), "hasMorePages": True}).encode()
        page = make_client(page_handler([]))[0].parse_screened_page(
            self.screened(body), path="/sessions", what="day 1"
        )
        assert (page.number, page.items, page.is_last) == (3, items("a", "b"), False)

    def test_a_screened_body_that_is_not_strict_json_is_repaired_as_the_client_would(self):
        client, _, _ = make_client(page_handler([]))
        body = b'{"items":[{"id":"a","score":NaN}],"hasMorePages":true}'
        page = client.parse_screened_page(self.screened(body), path="/sessions", what="day 1")
        assert page.items[0]["id"] == "a" and page.items[0]["score"] != page.items[0]["score"]
        assert client.stats.repaired_bodies == 1

    @pytest.mark.parametrize(
        ("body", "empty", "message"),
        [
            (b'{"items":[{"id":"a"}],"hasMorePages":tru}', False, r"page 3.*not JSON"),
            (b'{"items":[],"hasMorePages":true}', False, r"page 3.*disagree"),
            (b'{"items":[{"id":"a"}],"hasMorePages":false}', False, r"page 3.*disagree"),
            (
                b'{"items":[],"responseStatus":{"errorCode":"Boom"},"hasMorePages":true}',
                True,
                r"page 3.*carrying an error: Boom",
            ),
        ],
    )
    def test_a_screened_page_that_does_not_parse_as_screened_fails_by_name(
        self, body, empty, message
    ):
        client, _, _ = make_client(page_handler([]))
        with pytest.raises(BadResponse, match=message):
            client.parse_screened_page(
                self.screened(body, empty=empty), path="/sessions", what="day 1"
            )


class TestRetries:
    def test_retries_5xx_then_succeeds(self):
        answers = iter(
            [(500, b"{}", None), (503, b"<html>busy</html>", None), (200, {"items": []}, None)]
        )
        client, _, sleeps = make_client(
            lambda r: (200, {}, None) if "/auth" in r.url else next(answers)
        )
        assert client.get_json("/sessions", {}, what="t") == {"items": []}
        assert client.stats.retries == 2 and len(sleeps) == 2

    def test_connection_errors_and_timeouts_are_retried(self):
        answers = iter(
            [
                requests.ConnectionError("reset"),
                requests.ReadTimeout("slow"),
                (200, {"items": []}, None),
            ]
        )
        client, _, _ = make_client(lambda r: (200, {}, None) if "/auth" in r.url else next(answers))
        assert client.get_json("/sessions", {}, what="t") == {"items": []}

    def test_a_body_cut_short_is_retried(self):
        """Over a real socket: the body is read inside the retries, so a connection that closes
        before Content-Length bytes arrived is retried like a failed request."""
        body = json.dumps({"items": items("a", "b"), "hasMorePages": False}).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        answers = [
            head % len(body) + b"Connection: close\r\n\r\n" + body[:10],  # then closes
            head % len(body) + b"\r\n" + body,
        ]
        listener = socket.create_server(("127.0.0.1", 0))
        served: list[bytes] = []

        def serve():
            for answer in answers:
                connection, _ = listener.accept()
                with connection:
                    served.append(connection.recv(65536))
                    connection.sendall(answer)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        try:
            settings = EvoVoiceSettings(
                base_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
                auth="basic",
                username="ops@example.com",
                password=PASSWORD,
                initial_retry_delay=0.01,
                max_retry_delay=0.01,
            )
            with EvoVoiceClient(settings, seed=1) as client:
                payload = client.get_json("/sessions", {}, what="t")
            assert payload["items"] == items("a", "b")
            assert client.stats.retries == 1 and len(served) == 2
        finally:
            server.join(timeout=5)
            listener.close()

    def test_retry_after_is_honoured_and_pauses_everyone(self):
        answers = iter([(429, b"", {"Retry-After": "7"}), (200, {"items": []}, None)])
        client, _, sleeps = make_client(
            lambda r: (200, {}, None) if "/auth" in r.url else next(answers)
        )
        client.get_json("/sessions", {}, what="t")
        assert max(sleeps) >= 7

    def test_gives_up_with_path_context_and_status(self):
        client, adapter, _ = make_client(
            lambda r: (200, {}, None) if "/auth" in r.url else (502, b"<html/>", None),
            max_attempts=3,
        )
        with pytest.raises(
            ServerError,
            match=r"GET /sessions \(day 2026-11-28 page 4\) failed "
            r"after 3 attempts: HTTP 502",
        ):
            client.get_json("/sessions", {}, what="day 2026-11-28 page 4")
        assert sum("/sessions" in r.url for r in adapter.requests) == 3

    def test_persistent_429_raises_rate_limited(self):
        client, _, _ = make_client(
            lambda r: (200, {}, None) if "/auth" in r.url else (429, b"", None), max_attempts=2
        )
        with pytest.raises(RateLimited):
            client.get_json("/sessions", {}, what="t")

    def test_non_json_200_is_a_clear_error_not_an_empty_page(self):
        client, _, _ = make_client(
            lambda r: (200, {}, None) if "/auth" in r.url else (200, b"<html>oops", None),
            max_attempts=2,
        )
        with pytest.raises(BadResponse, match=r"day 2026-11-28 page 0.*not JSON"):
            client.get_json("/sessions", {}, what="day 2026-11-28 page 0")

    def test_400_is_not_retried_and_shows_servicestack_message(self):
        body = {"responseStatus": {"errorCode": "ArgumentException", "message": "bad startDate"}}
        client, adapter, _ = make_client(
            lambda r: (200, {}, None) if "/auth" in r.url else (400, body, None)
        )
        with pytest.raises(ClientError, match="bad startDate"):
            client.get_json("/sessions", {}, what="t")
        assert sum("/sessions" in r.url for r in adapter.requests) == 1

    @pytest.mark.parametrize(
        ("header", "expected"), [("3", 3.0), ("0", 0.0), ("junk", None), (None, None)]
    )
    def test_parse_retry_after_seconds(self, header, expected):
        assert parse_retry_after(header) == expected

    def test_parse_retry_after_http_date(self):
        assert parse_retry_after(formatdate(1_000_030, usegmt=True), now=1_000_000) == 30

    def test_backoff_is_capped_with_jitter(self):
        import random

        rng = random.Random(3)
        delays = [backoff_delay(n, 0.5, 4.0, rng) for n in range(1, 20)]
        assert all(0 <= d <= 4.0 for d in delays) and len(set(delays)) > 10

    def test_rate_gate_waits_until_deadline(self):
        now = [100.0]
        gate = RateGate(clock=lambda: now[0])
        gate.pause_for(5)
        slept = []

        def sleep(seconds):
            slept.append(seconds)
            now[0] += seconds

        gate.wait(sleep)
        assert slept == [5.0]


class TestEnvironment:
    def test_proxies_and_ca_bundle_come_from_the_environment(self, monkeypatch, tmp_path):
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
        monkeypatch.setenv("NO_PROXY", "localhost")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
        settings = EvoVoiceSettings(
            base_url="https://api.evovoice.io", username="u", password=PASSWORD
        )
        with EvoVoiceClient(settings) as client:
            assert client._http.proxies.get("https") == "http://proxy.internal:3128"
            assert client._http.verify == str(tmp_path / "ca.pem")

    def test_no_proxy_applies_and_netrc_is_never_read(self, monkeypatch, tmp_path):
        netrc = tmp_path / "netrc"
        netrc.write_text("machine api.evovoice.io login other password leaked\n")
        monkeypatch.setenv("NETRC", str(netrc))
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
        monkeypatch.setenv("NO_PROXY", "api.evovoice.io")
        settings = EvoVoiceSettings(
            base_url="https://api.evovoice.io", username="u", password=PASSWORD, auth="basic"
        )
        with EvoVoiceClient(settings) as client:
            assert "https" not in client._http.proxies
            prepared = client._http.prepare_request(
                requests.Request("GET", settings.base_url + "/sessions")
            )
            assert "Authorization" not in prepared.headers


def expiring_session(unauthorized: int):
    """A server whose first ``unauthorized`` data requests answer 401, whatever the session;
    returns the handler and its counts of logins and data requests."""
    state = {"logins": 0, "calls": 0}

    def handler(request):
        if "/auth/credentials" in request.url:
            state["logins"] += 1
            return (200, {}, {"Set-Cookie": f"ss-id=s{state['logins']}; path=/"})
        state["calls"] += 1
        return (401, b"{}", None) if state["calls"] <= unauthorized else (200, {"items": []}, None)

    return handler, state


class CookieServer(http.server.BaseHTTPRequestHandler):
    """Logs in with ``ss-id=s<n>``; the 2nd GET also sets ``theme=dark``; the 4th GET answers
    401 (the session expired). Records the Cookie header of every GET."""

    logins = 0
    gets: ClassVar[list[str]] = []

    def log_message(self, *args):
        pass

    def answer(self, status: int, cookie: str | None = None) -> None:
        body = json.dumps({"items": []}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if cookie:
            self.send_header("Set-Cookie", cookie + "; path=/")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).logins += 1
        self.answer(200, f"ss-id=s{self.logins}")

    def do_GET(self):
        self.gets.append(self.headers.get("Cookie", ""))
        number = len(self.gets)
        self.answer(401 if number == 4 else 200, "theme=dark" if number == 2 else None)


class TestAuth:
    def test_every_get_carries_the_cookies_set_so_far(self):
        """Over a real socket: GETs reuse prepared headers, yet a cookie set by any response,
        and the session of a fresh login, go out with the next request."""
        CookieServer.logins, CookieServer.gets = 0, []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CookieServer)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            settings = EvoVoiceSettings(
                base_url=f"http://127.0.0.1:{server.server_address[1]}",
                username="ops@example.com",
                password=PASSWORD,
            )
            with EvoVoiceClient(settings, seed=1) as client:
                for _ in range(4):  # the 4th is answered 401, logged into again and retried
                    client.get_json("/sessions", {}, what="t")
        finally:
            server.shutdown()
            server.server_close()
        first, second, third, expired, retried = CookieServer.gets
        assert first == second == "ss-id=s1"
        assert (
            sorted(third.split("; ")) == sorted(expired.split("; ")) == ["ss-id=s1", "theme=dark"]
        )
        assert sorted(retried.split("; ")) == ["ss-id=s2", "theme=dark"]

    def test_relogin_once_on_401_mid_run(self):
        handler, state = expiring_session(1)
        client, _, _ = make_client(handler)
        assert client.get_json("/sessions", {}, what="t") == {"items": []}
        assert state["logins"] == 2 and client.stats.relogins == 1

    def test_401_after_every_fresh_login_raises_auth_error_without_password(self):
        client, adapter, _ = make_client(
            lambda r: (200, {}, None) if "/auth" in r.url else (401, b"{}", None)
        )
        with pytest.raises(AuthError, match="after 3 fresh logins") as caught:
            client.get_json("/sessions", {}, what="t")
        assert "EVO_VOICE_USERNAME" in str(caught.value) and PASSWORD not in str(caught.value)
        assert sum("/auth" in r.url for r in adapter.requests) == 4  # the first login + 3

    def test_a_session_used_up_by_other_threads_before_the_retry_is_logged_into_again(self):
        """With several threads on one session, a fresh session can expire again before this
        request's retry: each newer login earns another try."""
        handler, state = expiring_session(2)
        client, _, _ = make_client(handler)
        assert client.get_json("/sessions", {}, what="t") == {"items": []}
        assert state["logins"] == 3 and client.stats.relogins == 2

    def test_login_401_names_settings(self):
        client, _, _ = make_client(page_handler([], login_status=401))
        with pytest.raises(AuthError, match="EVO_VOICE_PASSWORD") as caught:
            client.get_json("/sessions", {}, what="t")
        assert PASSWORD not in str(caught.value) and PASSWORD not in repr(client)

    def test_login_posts_credentials_and_remember_me(self):
        client, adapter, _ = make_client(page_handler([{"items": []}]))
        client.get_json("/sessions", {}, what="t")
        body = json.loads(adapter.requests[0].body)
        assert adapter.requests[0].path_url == "/auth/credentials"
        assert body == {"userName": "ops@example.com", "password": PASSWORD, "rememberMe": True}

    def test_basic_auth_sends_header_and_never_logs_in(self):
        client, adapter, _ = make_client(page_handler([{"items": []}]), auth="basic")
        client.get_json("/sessions", {}, what="t")
        assert all("/auth" not in r.url for r in adapter.requests)
        assert adapter.requests[0].headers["Authorization"].startswith("Basic ")


def wait_until_parked(threads: list[threading.Thread], timeout: float = 5.0) -> None:
    """Until every thread is blocked in a ``threading`` wait. A waiter checks the state under
    the slots' lock before it parks, so a parked waiter has seen the state as it was and relies
    on being woken by any change. (No event can say "parked", hence the short polling.)"""
    deadline = time.monotonic() + timeout
    while True:
        frames = sys._current_frames()
        parked = [
            (frame := frames.get(t.ident)) is not None
            and frame.f_code.co_filename == threading.__file__
            for t in threads
        ]
        if all(parked):
            return
        assert time.monotonic() < deadline, f"threads not parked: {parked}"
        time.sleep(0.001)


class TestRequestSlots:
    @pytest.mark.parametrize(
        "limit",
        [
            1,
            2,
        ],
    )
    def test_at_most_limit_holders_granted_in_page_order(self, limit):
        pages = 7
        slots = RequestSlots(limit)
        changed = threading.Condition()
        entered: list[int] = []
        active = [0, 0]  # now, peak
        errors: list[BaseException] = []
        release = [threading.Event() for _ in range(pages)]

        def worker(number: int) -> None:
            try:
                with slots.hold(number):
                    with changed:
                        entered.append(number)
                        active[0] += 1
                        active[1] = max(active)
                        changed.notify_all()
                    if not release[number].wait(5):
                        raise TimeoutError(f"page {number} never released")
                    with changed:
                        active[0] -= 1
                slots.finished(number, last=False)  # decoded at once: only the slots bind
            except BaseException as exc:
                errors.append(exc)

        def wait_for_entered(count: int) -> set[int]:
            with changed:
                assert changed.wait_for(lambda: len(entered) >= count, timeout=1), entered
                return set(entered)

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(pages)]
        try:
            for number in [5, 2, 6, 1, 4, 3]:  # every later page asks, and waits, before page 0
                threads[number].start()
            wait_until_parked(threads[1:])
            assert entered == []
            threads[0].start()
            # Release the holders one by one: each release lets exactly the next page in.
            for released in range(pages):
                expected = min(limit + released, pages)
                assert wait_for_entered(expected) == set(range(expected))
                release[released].set()
        finally:
            for event in release:
                event.set()
            slots.close()
            for thread in threads:
                thread.join(5)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert sorted(entered) == list(range(pages))
        assert active == [0, limit]

    def test_a_freed_slot_wakes_only_the_page_that_may_start(self, monkeypatch):
        """No thundering herd: of the pages waiting, only those that may start are woken; the
        others stay parked (each wake-up costs a GIL hand-off while pages are coming)."""
        wakeups: Counter[str] = Counter()

        class CountingEvent(threading.Event):
            def wait(self, timeout=None):
                woke = super().wait(timeout)
                wakeups[threading.current_thread().name] += 1
                return woke

        monkeypatch.setattr(threading, "Event", CountingEvent)
        slots = RequestSlots(1)
        entered: list[int] = []
        waiters = [
            threading.Thread(
                target=self._enter, args=(slots, n, entered), name=f"page {n}", daemon=True
            )
            for n in range(1, 6)
        ]
        with slots.hold(0):
            for thread in waiters:
                thread.start()
            wait_until_parked(waiters)
        slots.finished(0, last=False)
        waiters[0].join(5)
        waiters[1].join(5)  # page 1 in and out; page 2 then fits (one past page 0, decoded)
        assert entered == [1, 2]
        wait_until_parked(waiters[2:])
        # Pages 3-5 need page 1 decoded: through four changes of state, none was woken.
        assert [wakeups[f"page {n}"] for n in (3, 4, 5)] == [0, 0, 0]
        slots.close()
        for thread in waiters:
            thread.join(5)
        assert not any(t.is_alive() for t in waiters)
        assert [wakeups[f"page {n}"] for n in (3, 4, 5)] == [1, 1, 1]  # closed: told to stop

    @staticmethod
    def _enter(slots: RequestSlots, number: int, entered: list[int]) -> None:
        try:
            with slots.hold(number):
                entered.append(number)
        except PagingStopped:
            pass

    def test_close_releases_waiters_with_paging_stopped(self):
        slots = RequestSlots(1)
        holding, release = threading.Event(), threading.Event()
        outcome: dict[int, str] = {}
        numbers = (1, 4)

        def holder() -> None:
            with slots.hold(0):
                holding.set()
                release.wait(5)
            outcome[0] = "done"

        def waiter(number: int) -> None:
            try:
                with slots.hold(number):
                    outcome[number] = "granted"
            except PagingStopped:
                outcome[number] = "stopped"

        first = threading.Thread(target=holder, daemon=True)
        first.start()
        assert holding.wait(5)
        waiters = [threading.Thread(target=waiter, args=(n,), daemon=True) for n in numbers]
        for thread in waiters:
            thread.start()
        wait_until_parked(waiters)
        slots.close()  # the holder still holds its slot: close alone must wake the waiters
        for thread in waiters:
            thread.join(5)
        assert not any(t.is_alive() for t in waiters)
        assert outcome == {1: "stopped", 4: "stopped"}
        release.set()
        first.join(5)
        assert outcome[0] == "done"
        with pytest.raises(PagingStopped), slots.hold(2):
            pass  # nothing starts after close


class TestPagingOverlap:
    LAST = 5

    def scripted_server(self, *, window: float = 0.01):
        """A /sessions handler that records arrival order and overlapping requests; each
        request stays on the wire for up to ``window`` seconds, watching for the next one."""
        state = {
            "lock": threading.Lock(),
            "arrivals": [],
            "in_flight": 0,
            "overlaps": [],
            "received": [threading.Event() for _ in range(self.LAST + 8)],
        }

        def handler(request):
            if "/auth" in request.url:
                return (200, {}, None)
            number = int(dict(parse_qsl(urlparse(request.url).query))["page"])
            with state["lock"]:
                state["arrivals"].append(number)
                state["in_flight"] += 1
                if state["in_flight"] > 1:
                    state["overlaps"].append(number)
            state["received"][number].set()
            if state["received"][number + 1].wait(window):
                state["overlaps"].append(number + 1)  # sent while this one was on the wire
            with state["lock"]:
                state["in_flight"] -= 1
            body = {"items": items(f"p{number}"), "hasMorePages": number < self.LAST}
            return (200, body, None)

        return handler, state

    def assert_one_at_a_time_in_order(self, state):
        arrivals = state["arrivals"]
        assert arrivals == list(range(len(arrivals))) and len(arrivals) >= self.LAST + 1
        assert state["overlaps"] == []

    def test_one_worker_fetches_in_order_one_at_a_time_ahead_of_the_consumer(self):
        handler, state = self.scripted_server()
        client, _, _ = make_client(handler)
        got = []
        for page in client.iter_pages("/sessions", {}, what="t", concurrency=1):
            got.append(page.number)
            if not page.is_last:
                # The consumer still holds this page, and the next request is already out.
                assert state["received"][page.number + 1].wait(5), (
                    f"page {page.number + 1} was not requested while page {page.number} "
                    "was being processed"
                )
        assert got == list(range(self.LAST + 1))
        self.assert_one_at_a_time_in_order(state)

    def test_pages_are_decoded_outside_the_request_slot(self):
        # With one slot, the next request can only go out while a body is being decoded if
        # decoding does not hold the slot.
        handler, state = self.scripted_server()
        client, _, _ = make_client(handler)
        overlapped: dict[int, bool] = {}

        def decoder(body: bytes):
            number = int(json.loads(body)["items"][0]["id"][1:])
            if number < self.LAST and all(overlapped.values()):  # fail fast after a miss
                overlapped[number] = state["received"][number + 1].wait(5)
            return None  # the ordinary parse takes it from here

        pages = list(client.iter_pages("/sessions", {}, what="t", concurrency=1, decoder=decoder))
        assert [p.number for p in pages] == list(range(self.LAST + 1))
        assert [p.items for p in pages] == [items(f"p{n}") for n in range(self.LAST + 1)]
        assert overlapped == dict.fromkeys(range(self.LAST), True)
        self.assert_one_at_a_time_in_order(state)


class TestRequestSlotsPastTheEnd:
    def test_no_page_starts_more_than_limit_past_the_last_decoded_one(self):
        slots = RequestSlots(1)
        with slots.hold(0):
            pass
        with slots.hold(1):  # page 1 may be fetched while page 0 is still being decoded
            pass
        started = threading.Event()

        def page_two() -> None:
            with slots.hold(2):
                started.set()

        thread = threading.Thread(target=page_two, daemon=True)
        thread.start()
        assert not started.wait(0.2), "page 2 started before page 0 was decoded"
        slots.finished(0, last=False)
        assert started.wait(5)
        thread.join(5)

    def test_a_page_decoded_as_the_last_stops_the_pages_after_it(self):
        slots = RequestSlots(2)
        for number in range(3):
            with slots.hold(number):
                pass
        outcome: list[object] = []

        def page_three() -> None:
            try:
                with slots.hold(3):
                    outcome.append("started")
            except PagingStopped as exc:
                outcome.append(exc)

        thread = threading.Thread(target=page_three, daemon=True)
        thread.start()
        slots.finished(0, last=True)
        thread.join(5)
        assert not thread.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], PagingStopped)

    def test_pages_before_the_last_one_may_still_retry(self):
        slots = RequestSlots(2)
        for number in range(3):
            with slots.hold(number):
                pass
        slots.finished(2, last=True)  # page 2 (past the end) decoded while page 1 retries
        with slots.hold(1):  # page 1's retry is still allowed
            pass
        with pytest.raises(PagingStopped), slots.hold(3):
            pass
