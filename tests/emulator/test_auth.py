"""Authentication as ServiceStack does it: credentials login with ss-id/ss-pid/ss-opt cookies,
HTTP Basic on any route, 401 responseStatus bodies, logout, auth status, and cookie expiry."""

from __future__ import annotations

import requests

from tests.emulator.helpers import basic_session

PROTECTED = "/sessions"


def login(emu, session: requests.Session | None = None, **body) -> requests.Response:
    session = session or requests.Session()
    payload = {"userName": emu.config.username, "password": emu.config.password, **body}
    return session.post(f"{emu.base_url}/auth/credentials", json=payload, timeout=5)


def test_credentials_login_sets_session_cookies_that_authenticate(shared_emu):
    session = requests.Session()
    response = login(shared_emu, session, rememberMe=True)

    assert response.status_code == 200
    body = response.json()
    assert body["userName"] == shared_emu.config.username
    assert body["sessionId"] == session.cookies["ss-id"]
    assert {"userId", "displayName", "roles", "permissions"} <= body.keys()
    assert session.cookies["ss-opt"] == "perm"
    assert session.cookies["ss-pid"]
    assert session.get(f"{shared_emu.base_url}{PROTECTED}", timeout=5).status_code == 200


def test_login_without_remember_me_sets_no_ss_opt(shared_emu):
    session = requests.Session()
    assert login(shared_emu, session, rememberMe=False).status_code == 200
    assert "ss-opt" not in session.cookies
    assert session.get(f"{shared_emu.base_url}{PROTECTED}", timeout=5).status_code == 200


def test_every_authenticate_route_and_body_encoding_logs_in(shared_emu):
    creds = {"userName": shared_emu.config.username, "password": shared_emu.config.password}
    attempts = [
        ("/auth", {"json": {"provider": "credentials", **creds}}),
        ("/auth/credentials", {"data": creds}),  # form-encoded
        ("/json/reply/Authenticate", {"json": {"provider": "credentials", **creds}}),
        ("/api/Authenticate", {"json": {**creds, "rememberMe": True}}),
        (
            "/auth/credentials",
            {"json": {"UserName": creds["userName"], "Password": creds["password"]}},
        ),
    ]
    for path, kwargs in attempts:
        session = requests.Session()
        response = session.post(f"{shared_emu.base_url}{path}", timeout=5, **kwargs)
        assert response.status_code == 200, (path, response.text)
        assert session.get(f"{shared_emu.base_url}{PROTECTED}", timeout=5).status_code == 200


def test_wrong_password_is_a_401_with_servicestack_body(shared_emu):
    response = login(shared_emu, password="nope")

    assert response.status_code == 401
    assert response.json() == {
        "responseStatus": {
            "errorCode": "Unauthorized",
            "message": "Invalid UserName or Password",
            "errors": [],
        }
    }
    assert "ss-id" not in response.cookies


def test_unauthenticated_data_routes_are_401(shared_emu):
    for path in ("/sessions", "/accounts", "/json/reply/ListSessions", "/sessions/abc"):
        response = requests.get(f"{shared_emu.base_url}{path}", timeout=5)
        assert response.status_code == 401, path
        status = response.json()["responseStatus"]
        assert status["errorCode"] == "Unauthorized"
        assert status["message"]


def test_basic_auth_works_on_every_data_route_without_cookies(shared_emu):
    session = basic_session(shared_emu)
    for path in ("/sessions", "/accounts", "/auth/status", "/json/reply/ListSessions"):
        response = session.get(f"{shared_emu.base_url}{path}", timeout=5)
        assert response.status_code == 200, path
    assert not session.cookies

    wrong = requests.get(f"{shared_emu.base_url}/sessions", auth=("demo@evo.local", "x"), timeout=5)
    assert wrong.status_code == 401
    assert wrong.json()["responseStatus"]["errorCode"] == "Unauthorized"


def test_auth_status_returns_user_info(shared_emu):
    session = requests.Session()
    login(shared_emu, session)

    for path in ("/auth/status", "/json/reply/GetAuthStatus"):
        info = session.get(f"{shared_emu.base_url}{path}", timeout=5).json()
        assert info["isAuthenticated"] is True
        assert info["emailAddress"] == shared_emu.config.username
        assert info["accountIds"] == [a["id"] for a in shared_emu.store.accounts()]
        assert len(info["accountNames"]) == len(info["accountIds"])
        assert {
            "id",
            "firstName",
            "lastName",
            "name",
            "roles",
            "dashboardPermissions",
        } <= info.keys()
    assert requests.get(f"{shared_emu.base_url}/auth/status", timeout=5).status_code == 204


def test_logout_invalidates_the_session(emu):
    for logout in (
        lambda s: s.get(f"{emu.base_url}/auth/logout", timeout=5),
        lambda s: s.post(f"{emu.base_url}/auth/logout", timeout=5),
        lambda s: s.delete(f"{emu.base_url}/auth", timeout=5),
    ):
        session = requests.Session()
        login(emu, session, rememberMe=True)
        cookies = dict(session.cookies)
        assert logout(session).status_code == 200
        again = requests.get(f"{emu.base_url}{PROTECTED}", cookies=cookies, timeout=5)
        assert again.status_code == 401


def test_session_cookie_expires_after_n_authenticated_requests(start_emulator):
    emu = start_emulator(cookie_expiry_requests=3)
    session = requests.Session()
    login(emu, session)

    statuses = [session.get(f"{emu.base_url}{PROTECTED}", timeout=5).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 401]

    login(emu, session)
    assert session.get(f"{emu.base_url}{PROTECTED}", timeout=5).status_code == 200
    # Basic auth has no server-side session to expire.
    basic = basic_session(emu)
    assert {basic.get(f"{emu.base_url}{PROTECTED}", timeout=5).status_code for _ in range(5)} == {
        200
    }
