"""The official ``servicestack`` Python client works against the emulator as against the real
service: it authenticates with its Authenticate DTO, gets typed ListSessions results through the
predefined and custom routes, and raises WebServiceException carrying the responseStatus."""

# The servicestack client resolves DTO field types at run time and understands only the typing
# module's Optional/List/Dict spelling, so these DTOs keep it.
# ruff: noqa: UP006, UP035, UP045

from dataclasses import dataclass
from datetime import date
from typing import Dict, Generic, List, Optional, TypeVar

import pytest
from dataclasses_json import LetterCase, Undefined, dataclass_json
from servicestack import Authenticate, IGet, IReturn, JsonServiceClient, WebServiceException

T = TypeVar("T")


def dto(cls):
    return dataclass_json(letter_case=LetterCase.CAMEL, undefined=Undefined.EXCLUDE)(dataclass(cls))


@dto
class CustomerBreadcrumb:
    id: Optional[str] = None
    name: Optional[str] = None


@dto
class SessionLogInfo:
    date: Optional[str] = None
    message: Optional[str] = None


@dto
class SessionMemberInfo:
    identity: Optional[str] = None
    endpoint_id: Optional[str] = None
    display_name: Optional[str] = None
    is_original_member: Optional[bool] = None
    application_data: Optional[Dict[str, str]] = None
    role: Optional[str] = None


@dto
class SessionInfo:
    id: Optional[str] = None
    date_created: Optional[str] = None
    account_id: Optional[str] = None
    customer_id: Optional[str] = None
    customer_breadcrumb: Optional[List[CustomerBreadcrumb]] = None
    from_address: Optional[str] = None
    channel: Optional[str] = None
    was_missed: Optional[bool] = None
    log: Optional[List[SessionLogInfo]] = None
    members: Optional[List[SessionMemberInfo]] = None


@dto
class ListResponse(Generic[T]):
    items: Optional[List[T]] = None
    total_count: Optional[int] = None
    total_pages: Optional[int] = None
    has_more_pages: Optional[bool] = None


@dto
class ListSessions(IReturn[ListResponse[SessionInfo]], IGet):
    page: Optional[int] = None
    count_per_page: Optional[int] = None
    simplified_paging: Optional[bool] = None
    account_ids: Optional[List[str]] = None
    start_date: Optional[str] = None
    end_date: Optional[str] = None
    from_: Optional[str] = None  # the client strips the trailing underscore: ?from=


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
        s
        for s in shared_emu.store.sessions_on_local_day(date(2026, 3, 9))
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
