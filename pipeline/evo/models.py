"""The API contract: pydantic models with the seed page's field names (camelCase on the wire).

Tolerant of drift: unknown fields are kept (``model_extra``) so nothing the API sends is lost,
enum-typed fields are plain strings checked against :data:`KNOWN_ENUM_VALUES` (an unknown value
is reported, never fatal), ``null`` lists become empty lists, and timestamps in every shape
:func:`parse_timestamp` knows are normalised to UTC.

The ingestion fast path (``pipeline/lake/flatten.py``) does not validate row by row with these
models; tests check that it produces exactly what these models produce.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasGenerator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from pipeline.evo.timestamps import parse_timestamp

KNOWN_ENUM_VALUES: dict[str, frozenset[str]] = {
    "dialState": frozenset({"None", "Active"}),
    "callState": frozenset({"Disconnected", "Ringing", "Connected", "Hold", "Passive"}),
    "queueState": frozenset({"None", "Queued", "Ringing", "Connected", "Hold", "Disconnected"}),
    "channel": frozenset({"Voice", "Chat", "Fax"}),
    "holdReason": frozenset({"None", "Transferring"}),
    "direction": frozenset({"Incoming", "Outgoing"}),
}
KNOWN_MEMBER_ENUM_VALUES: dict[str, frozenset[str]] = {
    "callState": frozenset({"None", "Ringing", "Connected", "Hold"}),
    "role": frozenset({"None", "Caller", "Agent", "Transfer"}),
}


def _none_to_empty_list(value: Any) -> Any:
    return [] if value is None else value


UtcTimestamp = Annotated[
    datetime | None, BeforeValidator(lambda v: parse_timestamp(v) if isinstance(v, str) else v)
]


class ApiModel(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
    )


class EntityInfo(ApiModel):
    id: str | None = None
    date_created: UtcTimestamp = None
    date_last_modified: UtcTimestamp = None
    created_by: str | None = None
    last_modified_by: str | None = None


class CustomerBreadcrumb(ApiModel):
    id: str | None = None
    name: str | None = None


class SessionLogInfo(ApiModel):
    date: UtcTimestamp = None
    message: str | None = None


class SessionMemberInfo(ApiModel):
    identity: str | None = None
    endpoint_id: str | None = None
    display_name: str | None = None
    is_original_member: bool | None = None
    avatar_url: str | None = None
    application_data: dict[str, Any] | None = None
    call_state: str | None = None
    role: str | None = None
    call_sid: str | None = None
    muted: bool | None = None


EmptyIfNull = BeforeValidator(_none_to_empty_list)


class SessionInfo(EntityInfo):
    dial_state: str | None = None
    call_state: str | None = None
    queue_state: str | None = None
    account_id: str | None = None
    account_name: str | None = None
    customer_id: str | None = None
    customer_breadcrumb: Annotated[list[CustomerBreadcrumb], EmptyIfNull] = Field(
        default_factory=list
    )
    customer_name: str | None = None
    endpoint_id: str | None = None
    endpoint_name: str | None = None
    date_completed: UtcTimestamp = None
    destination: str | None = None
    to_address: str | None = None
    from_address: str | None = None
    from_name: str | None = None
    answered_by_name: str | None = None
    queue_member_id: str | None = None
    channel: str | None = None
    ended: bool | None = None
    outcome: str | None = None
    call_sid: str | None = None
    console_data: str | None = None
    hold_queue_name: str | None = None
    held_by_user_id: str | None = None
    hold_reason: str | None = None
    conference_sid: str | None = None
    display_name: str | None = None
    log: Annotated[list[SessionLogInfo], EmptyIfNull] = Field(default_factory=list)
    members: Annotated[list[SessionMemberInfo], EmptyIfNull] = Field(default_factory=list)
    callback_number: str | None = None
    answered_by_id: str | None = None
    direction: str | None = None
    from_phone_number: str | None = None
    most_recent_participant_call_sid: str | None = None
    was_missed: bool | None = None
    ring_queue_id: str | None = None

    def unknown_enum_values(self) -> dict[str, str]:
        """Enum-typed fields whose value the seed contract does not list."""
        found = {}
        for api_name, known in KNOWN_ENUM_VALUES.items():
            value = getattr(self, _SNAKE[api_name])
            if value is not None and value not in known:
                found[api_name] = value
        return found


_SNAKE = {camel: name for name, camel in ((n, to_camel(n)) for n in SessionInfo.model_fields)}


class BillingItem(ApiModel):
    base_cost: float | None = None
    raw_unit_multiplier: float | None = None
    unit_cost: float | None = None
    allowance: float | None = None


class BillingSettings(ApiModel):
    """Billing items by name; names beyond the seed (``aiInsights``...) land in ``model_extra``."""

    base: BillingItem | None = None
    local_numbers: BillingItem | None = None
    toll_free_numbers: BillingItem | None = None
    inbound_voice_calls: BillingItem | None = None
    outbound_voice_calls: BillingItem | None = None
    inbound_faxes: BillingItem | None = None
    outbound_faxes: BillingItem | None = None
    inbound_sms_messages: BillingItem | None = None
    outbound_sms_messages: BillingItem | None = None


class AccountInfo(EntityInfo):
    name: str | None = None
    parent_account_id: str | None = None
    twilio_account_sid: str | None = None
    ancestor_ids: Annotated[list[str], EmptyIfNull] = Field(default_factory=list)
    max_phone_numbers: int | None = None
    is_byoa: bool | None = Field(None, validation_alias="isBYOA", serialization_alias="isBYOA")
    trust_hub_profile_sid: str | None = None
    logo_id: str | None = None
    logo_uri: str | None = None
    billing_settings: BillingSettings | None = None


class ListResponse(ApiModel):
    """One page of any ``List*`` operation."""

    items: Annotated[list[dict[str, Any]], EmptyIfNull] = Field(default_factory=list)
    total_count: int | None = None
    total_pages: int | None = None
    has_more_pages: bool | None = None


SESSION_SCALAR_FIELDS: tuple[str, ...] = tuple(
    name
    for name in SessionInfo.model_fields
    if name not in {"customer_breadcrumb", "log", "members"}
)
"""SessionInfo's scalar fields in snake_case, in contract order (the raw.sessions columns)."""

SESSION_API_FIELDS: frozenset[str] = frozenset(to_camel(n) for n in SessionInfo.model_fields)
MEMBER_API_FIELDS: frozenset[str] = frozenset(to_camel(n) for n in SessionMemberInfo.model_fields)
