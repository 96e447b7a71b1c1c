"""The official ``servicestack`` Python client works against the emulator as against the real
service: it authenticates with its Authenticate DTO, gets typed ListSessions results through the
predefined and custom routes, and raises WebServiceException carrying the responseStatus."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Generic, TypeVar

import pytest
from dataclasses_json import LetterCase, Undefined, dataclass_json
from servicestack import Authenticate, IGet, IReturn, JsonServiceClient, WebServiceException

T = TypeVar("T")


def dto(cls):
    return dataclass_json(letter_case=LetterCase.CAMEL, undefined=Undefined.EXCLUDE)(
        dataclass(cls)
    )


@dto
class CustomerBreadcrumb:
    id: str | None = None
    name: str | None = None


@dto
class SessionLogInfo:
    date: str | None = None
    message: str | None = None


@dto
class SessionMemberInfo:
    identity: str | None = None
    endpoint_id: str | None = None
    display_name: str | None = None
    is_original_member: bool | None = None
    application_data: dict[str, str] | None = None
    role: str | None = None


@dto
class SessionInfo:
    id: str | None = None
    date_created: str | None = None
    account_id: str | None = None
    customer_id: str | None = None
    customer_breadcrumb: list[CustomerBreadcrumb] | None = None
    from_address: str | None = None
    channel: str | None = None
    was_missed: bool | None = None
    log: list[SessionLogInfo] | None = None
    members: list[SessionMemberInfo] | None = None


@dto
class ListResponse(Generic[T]):
    items: list[T] | None = None
    total_count: int | None = None
    total_pages: int | None = None
    has_more_pages: bool | None = None


@dto
class ListSessions(IReturn[ListResponse[SessionInfo]], IGet):
    page: int | None = None
    count_per_page: int | None = None
    simplified_paging: bool | None = None
    account_ids: list[str] | None = None
    start_date: str | None = None
    end_date: str | None = None
    from_: str | None = None  # the client strips the trailing underscore: ?from=


@pytest.fixture
def client(shared_emu) -> JsonServiceClient:
    client = JsonServiceClient(shared_emu.base_url)
    client.set_base_path("")  # ServiceStack's classic /json/reply/{Op} routes
    return client


def test_anonymous_call_raises_web_service_exception(client):
    with pytest.raises(WebServiceException) as caught:
        client.get(ListSessions(count_per_page=1))
    assert caught.value.status_code == 401
    assert caught.value.response_status.error_code == "Unauthorized"


def test_authenticate_then_typed_list_sessions(shared_emu, client):
    auth = client.post(
        Authenticate(
            provider="credentials",
            user_name=shared_emu.config.username,
            password=shared_emu.config.password,
            remember_me=True,
        )
    )
    assert auth.user_name == shared_emu.config.username and auth.session_id

    account = shared_emu.store.accounts()[1]["id"]
    result = client.get(
        ListSessions(
            count_per_page=5,
            start_date="2026-03-09",
            end_date="2026-03-09",
            account_ids=[account],
            from_="+",
        )
    )
    assert isinstance(result, ListResponse)
    assert len(result.items) == 5 and result.total_count > 5 and result.has_more_pages
    first = result.items[0]
    assert isinstance(first, SessionInfo) and first.account_id == account
    assert isinstance(first.customer_breadcrumb[-1], CustomerBreadcrumb)
    assert first.customer_breadcrumb[-1].id == first.customer_id
    assert isinstance(first.log[0], SessionLogInfo) and first.log[0].message
    assert first.members[0].role in {"Caller", "Agent"}

    truth = [
        s for s in shared_emu.store.sessions_on_local_day(date(2026, 3, 9))
        if s["accountId"] == account
    ]
    assert result.total_count == len(truth)


def test_custom_route_and_default_api_base_path(shared_emu):
    client = JsonServiceClient(shared_emu.base_url)  # default base path: /api/{Op}
    client.set_credentials(shared_emu.config.username, shared_emu.config.password)  # Basic
    typed = client.get(ListSessions(count_per_page=2, simplified_paging=True))
    assert len(typed.items) == 2 and typed.total_count == 0
    by_route = client.get_url(
        "/sessions", response_as=ListResponse[SessionInfo], args={"countPerPage": 2}
    )
    assert [s.id for s in by_route.items] == [s.id for s in typed.items]


def test_bad_request_surfaces_the_response_status(shared_emu, client):
    client.set_credentials(shared_emu.config.username, shared_emu.config.password)
    with pytest.raises(WebServiceException) as caught:
        client.get(ListSessions(start_date="2024-13-45"))
    error = caught.value
    assert error.status_code == 400
    assert error.response_status.error_code == "ArgumentException"
    assert "2024-13-45" in error.response_status.message
    assert error.response_status.errors[0].field_name == "StartDate"


def test_wrong_password_raises_with_the_message(shared_emu, client):
    with pytest.raises(WebServiceException) as caught:
        client.post(Authenticate(provider="credentials", user_name="demo@evo.local", password="x"))
    assert caught.value.status_code == 401
    assert caught.value.response_status.message == "Invalid UserName or Password"
