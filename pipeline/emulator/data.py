"""Deterministic, realistic Evo Voice data: accounts, customers, endpoints and sessions.

Two layers:

* :class:`World` is everything that does not depend on the day: the accounts (the first one a
  reseller parenting the others), each account's customer tree (1-3 levels), its endpoints
  (phone numbers, users, teams) and a pool of outside contacts who call in and are called. It is
  built once from the seed.
* :func:`generate_day` makes the sessions created on one UTC day from ``(seed, day)`` alone, so
  days can be generated lazily, in any order, and always come out the same. Sessions follow a
  business-hours arrival curve in each account's own time zone.

Sessions come out as :class:`SessionRecord`: the served JSON bytes (rendered in the requested
timestamp format) plus the handful of fields queries filter and sort on. The JSON is assembled
from pre-escaped fragments rather than built as dicts and serialized, which is what makes
generation fast enough for hundreds of thousands of sessions a day.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from itertools import accumulate
from typing import Any

import orjson

from pipeline.emulator.timefmt import (
    TICKS_PER_DAY,
    TICKS_PER_SECOND,
    day_start_ticks,
    formatter_for,
    offset_seconds,
    ticks_from_datetime,
)

S = TICKS_PER_SECOND
HOUR = 3600 * S

# Relative call volume per local hour: quiet nights, a morning ramp, a lunch dip.
HOURLY_WEIGHTS = (
    0.5, 0.3, 0.2, 0.2, 0.3, 0.6, 1.5, 4.0, 9.0, 12.0, 12.5, 12.0,
    10.0, 11.0, 12.0, 11.5, 10.0, 7.0, 4.0, 2.5, 2.0, 1.5, 1.0, 0.7,
)  # fmt: skip

# Within one UTC day, how busy an account's local weekend hours are next to its weekday hours
# (the day's total volume is set separately, by sessions_per_day and weekend_factor).
WEEKEND_HOURLY_FACTOR = 0.3

ACCOUNT_ZONES = (
    "America/New_York",
    "America/Chicago",
    "Europe/London",
    "America/Los_Angeles",
    "Australia/Sydney",
    "Europe/Berlin",
    "America/Denver",
    "Asia/Tokyo",
)
ACCOUNT_NAMES = (
    "Evo Demo Reseller",
    "Northwind Telecom",
    "Señor Café Group",
    "Brightline Health",
    "Kōbe Logistics",
    "Zürich Treuhand AG",
    "Mountain West Realty",
    "東京 Trading KK",
)
COUNTRY_OF_ZONE = {
    "America/New_York": "US",
    "America/Chicago": "US",
    "America/Los_Angeles": "US",
    "America/Denver": "US",
    "Europe/London": "GB",
    "Australia/Sydney": "AU",
    "Europe/Berlin": "DE",
    "Asia/Tokyo": "JP",
}
US_AREA_CODES = ("212", "312", "415", "617", "305", "512", "206", "404", "303", "702")

FIRST_NAMES = (
    "José", "María", "Zoë", "Søren", "Łukasz", "Ólafur", "Chloé", "Björn", "Anaïs", "François",
    "James", "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sofía", "Jürgen", "Renée",
    "Siobhán", "Dmitri", "Aoife", "Kwame", "Priya", "Ngozi", "Hiroshi", "Ingrid", "Mícheál",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "García", "O'Brien", "Nguyễn", "Kowalski", "Sørensen", "Dubois", "Smith",
    "Johnson", "Brown", "Fernández", "Łopez", "Østergaard", "Schröder", "Núñez", "Walker",
    "Okafor", "Tanaka", "Patel", "Cohen", "MacLeod", "Ibáñez", "Kim", "Rossi",
)  # fmt: skip
WHOLE_NAMES = (
    "王芳", "李娜", "张伟", "陈静", "佐藤 花子", "김민준", "Анна Смирнова", "Γιώργος Παπαδόπουλος",
    "محمد الأحمد", "प्रिया शर्मा", "Nguyễn Thị Lan", "José Müller", "Zoë Ibáñez",
)  # fmt: skip
CUSTOMER_NAMES = (
    "Acme Dental", "Müller Bäckerei GmbH", "Café Lumière", "北京华信科技", "São Paulo Imports",
    "Nørrebro Cykler ApS", "O'Brien & Sons Plumbing", "Ålesund Marine", "Blue Ridge Clinic",
    "Żabka Franchise Co", "Crème de la Crème Bakery", "Lakeside Veterinary", "Hôtel Étoile",
    "Tokyo Ramen 一番", "Pinecrest Insurance", "Delta Auto Repair", "Señora Flores Law",
    "Harbor Freight Lines", "Gründerzeit Immobilien", "Sunrise Pediatrics",
)  # fmt: skip
SUB_CUSTOMER_SUFFIXES = (
    "Downtown",
    "North",
    "Support",
    "Sales",
    "Billing",
    "Branch 2",
    "Westside",
    "Après-vente",
)
TEAM_NAMES = ("Support Team", "Sales Team", "Front Desk", "After Hours", "Équipe Service")
CNAM_PLACEHOLDERS = ("WIRELESS CALLER", "UNKNOWN", "TOLL FREE CALL")
CARRIERS = ("Verizon Wireless", "AT&T Mobility", "T-Mobile", "Vodafone", "Telstra", "Comcast")
DEVICES = ("browser", "ios", "android", "sip", "desktop")
APP_VERSIONS = ("4.12.3", "4.13.0", "4.13.1", "5.0.2")
HOLD_QUEUES = ("Default Hold Queue", "Music On Hold", "Transfer Hold")
OUTGOING_FAILURES = {
    "NoAnswer": "No answer",
    "Busy": "Line busy",
    "Failed": "Call failed: number unreachable",
}


def _hex(rng: random.Random, nhex: int) -> str:
    return f"{rng.getrandbits(nhex * 4):0{nhex}x}"


def js(value: str | None) -> str:
    """The JSON literal of a string, or ``null``."""
    return "null" if value is None else orjson.dumps(value).decode()


def jb(value: str) -> str:
    """JSON-escaped text without the quotes, to splice into a larger JSON string."""
    return orjson.dumps(value).decode()[1:-1]


def _q(value: str | None) -> str:
    # For values known to need no escaping (ids, E.164 numbers, SIDs, enum names).
    return "null" if value is None else f'"{value}"'


def phone_number(rng: random.Random, country: str) -> str:
    """A realistic E.164 number in a range reserved for fiction where the country has one."""
    if country == "US":
        return f"+1{rng.choice(US_AREA_CODES)}555{rng.randrange(10_000):04d}"
    if country == "GB":
        return f"+44207946{rng.randrange(1000):04d}"
    if country == "AU":
        return f"+6125550{rng.randrange(10_000):04d}"
    if country == "DE":
        return f"+4930{rng.randrange(10**8):08d}"
    return f"+813{rng.randrange(10**8):08d}"


def national_format(e164: str) -> str:
    """How someone would type the number into the Dial box."""
    if e164.startswith("+1") and len(e164) == 12:
        return f"({e164[2:5]}) {e164[5:8]}-{e164[8:]}"
    return e164


def person_name(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return rng.choice(WHOLE_NAMES)
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


@dataclass
class Endpoint:
    """An endpoint: a phone number, a user (agent) or a team."""

    id: str
    type: str
    name: str
    account_id: str
    customer_id: str
    phone_number: str | None = None
    email: str | None = None
    device: str = "browser"
    avatar_url: str | None = None
    member_ids: list[str] = field(default_factory=list)

    @cached_property
    def js_name(self) -> str:
        return js(self.name)

    @cached_property
    def jb_name(self) -> str:
        return jb(self.name)

    @cached_property
    def js_avatar(self) -> str:
        return js(self.avatar_url)


@dataclass
class Customer:
    """A customer of an account; customers nest up to three deep."""

    id: str
    name: str
    account_id: str
    parent_id: str | None
    breadcrumb: list[dict[str, str]]
    weight: float
    numbers: list[Endpoint] = field(default_factory=list)
    agents: list[Endpoint] = field(default_factory=list)
    team: Endpoint | None = None
    created: int = 0
    #: ``"accountId":...,"customerName":...,`` as served, shared by all its sessions.
    json_prefix: str = ""
    crumb_ids: tuple[str, ...] = ()


class Contact:
    """Someone outside the account who calls in, texts, faxes, or is called."""

    __slots__ = ("carrier", "jb_display", "js_name", "name", "number")

    def __init__(self, name: str | None, number: str, carrier: str) -> None:
        self.name = name
        self.number = number
        self.carrier = carrier
        self.js_name = js(name)
        self.jb_display = jb(name or number)


@dataclass
class Account:
    """An account and everything that hangs off it."""

    index: int
    id: str
    name: str
    tz: str
    country: str
    weight: float
    parent_id: str | None
    info: dict[str, Any]
    customers: list[Customer] = field(default_factory=list)
    customer_cum: list[float] = field(default_factory=list)
    contacts: list[Contact] = field(default_factory=list)


def _billing_item(rng: random.Random, base: float, unit: float, allowance: int) -> dict:
    return {
        "baseCost": round(base * rng.uniform(0.8, 1.2), 2),
        "rawUnitMultiplier": rng.choice((1.0, 1.0, 1.2, 1.5)),
        "unitCost": round(unit * rng.uniform(0.8, 1.2), 4),
        "allowance": allowance,
    }


def _billing_settings(rng: random.Random) -> dict:
    return {
        "base": _billing_item(rng, 49.0, 0.0, 0),
        "localNumbers": _billing_item(rng, 0.0, 1.5, 5),
        "tollFreeNumbers": _billing_item(rng, 0.0, 2.5, 1),
        "inboundVoiceCalls": _billing_item(rng, 0.0, 0.0085, 1000),
        "outboundVoiceCalls": _billing_item(rng, 0.0, 0.014, 1000),
        "inboundFaxes": _billing_item(rng, 0.0, 0.07, 50),
        "outboundFaxes": _billing_item(rng, 0.0, 0.07, 50),
        "inboundSmsMessages": _billing_item(rng, 0.0, 0.0079, 500),
        "outboundSmsMessages": _billing_item(rng, 0.0, 0.0079, 500),
    }


class World:
    """The day-independent part of the generated data, built once from the seed."""

    #: The instant the generated accounts were created (their ``dateCreated``).
    EPOCH_TICKS = ticks_from_datetime(datetime(2021, 3, 1, 12, 0, tzinfo=UTC))

    def __init__(self, seed: int, accounts_count: int) -> None:
        self.seed = seed
        rng = random.Random(f"evo-emulator/world/{seed}")
        self.accounts: list[Account] = []
        self.customers: dict[str, Customer] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.user_id = f"{0x5F3A0000:08x}{_hex(rng, 16)}"
        parent_id: str | None = None
        for index in range(accounts_count):
            account_id = self._oid(rng, self.EPOCH_TICKS + index * 30 * TICKS_PER_DAY)
            tz = ACCOUNT_ZONES[index % len(ACCOUNT_ZONES)]
            name = ACCOUNT_NAMES[index % len(ACCOUNT_NAMES)]
            if index >= len(ACCOUNT_NAMES):
                name = f"{name} {index // len(ACCOUNT_NAMES) + 1}"
            created = self.EPOCH_TICKS + index * 30 * TICKS_PER_DAY
            info = {
                "name": name,
                "parentAccountId": parent_id if index else None,
                "twilioAccountSid": "AC" + _hex(rng, 32),
                "ancestorIds": [parent_id] if index and parent_id else [],
                "maxPhoneNumbers": rng.choice((25, 50, 100, 250)),
                "isBYOA": rng.random() < 0.25,
                "trustHubProfileSid": ("BU" + _hex(rng, 32)) if rng.random() < 0.6 else None,
                "logoId": None,
                "logoUri": None,
                "billingSettings": _billing_settings(rng),
                "id": account_id,
                "dateCreated": created,
                "dateLastModified": created + rng.randrange(400) * TICKS_PER_DAY,
                "createdBy": self.user_id,
                "lastModifiedBy": self.user_id,
            }
            if rng.random() < 0.5:
                info["logoId"] = _hex(rng, 24)
                info["logoUri"] = f"https://evovoice.io/files/{info['logoId']}/logo.png"
            account = Account(
                index=index,
                id=account_id,
                name=name,
                tz=tz,
                country=COUNTRY_OF_ZONE[tz],
                # The reseller carries little traffic of its own.
                weight=0.05 if index == 0 and accounts_count > 1 else rng.uniform(0.6, 1.4),
                parent_id=info["parentAccountId"],
                info=info,
            )
            if index == 0:
                parent_id = account_id
            self._build_customers(rng, account)
            account.contacts = [
                Contact(
                    None if rng.random() < 0.3 else person_name(rng),
                    phone_number(rng, account.country if rng.random() < 0.9 else "US"),
                    rng.choice(CARRIERS),
                )
                for _ in range(1500)
            ]
            for customer in account.customers:
                customer.crumb_ids = tuple(c["id"] for c in customer.breadcrumb)
                customer.json_prefix = (
                    f'"accountId":"{account.id}","accountName":{js(account.name)},'
                    f'"customerId":"{customer.id}",'
                    f'"customerBreadcrumb":{orjson.dumps(customer.breadcrumb).decode()},'
                    f'"customerName":{js(customer.name)},'
                )
            self.accounts.append(account)
        self.account_cum = list(accumulate(a.weight for a in self.accounts))
        self.by_account_id = {a.id: a for a in self.accounts}

    @staticmethod
    def _oid(rng: random.Random, ticks: int) -> str:
        return f"{ticks // S:08x}{_hex(rng, 16)}"

    def _endpoint(
        self,
        rng: random.Random,
        account: Account,
        customer: Customer,
        kind: str,
        name: str,
        created: int,
        **extra: Any,
    ) -> Endpoint:
        endpoint = Endpoint(
            id=self._oid(rng, created),
            type=kind,
            name=name,
            account_id=account.id,
            customer_id=customer.id,
            **extra,
        )
        self.endpoints[endpoint.id] = endpoint
        return endpoint

    def _build_customers(self, rng: random.Random, account: Account) -> None:
        created = account.info["dateCreated"] + TICKS_PER_DAY

        def add(name: str, parent: Customer | None) -> Customer:
            nonlocal created
            created += rng.randrange(1, 20) * TICKS_PER_DAY
            customer_id = self._oid(rng, created)
            trail = (parent.breadcrumb if parent else []) + [{"id": customer_id, "name": name}]
            customer = Customer(
                id=customer_id,
                name=name,
                account_id=account.id,
                parent_id=parent.id if parent else None,
                breadcrumb=trail,
                weight=rng.uniform(0.2, 2.0),
                created=created,
            )
            for _ in range(rng.choice((1, 1, 2, 3))):
                number = phone_number(rng, account.country)
                customer.numbers.append(
                    self._endpoint(
                        rng, account, customer, "PhoneNumber", number, created, phone_number=number
                    )
                )
            for _ in range(rng.randint(2, 6)):
                agent_name = person_name(rng)
                local = "".join(ch for ch in agent_name.lower() if ch.isascii() and ch.isalnum())
                agent = self._endpoint(
                    rng,
                    account,
                    customer,
                    "User",
                    agent_name,
                    created,
                    email=f"{local or 'agent'}{rng.randrange(100)}@example.com",
                    device=rng.choice(DEVICES),
                )
                if rng.random() < 0.5:
                    agent.avatar_url = f"https://evovoice.io/avatars/{agent.id}.png"
                customer.agents.append(agent)
            customer.team = self._endpoint(
                rng,
                account,
                customer,
                "Team",
                rng.choice(TEAM_NAMES),
                created,
                member_ids=[a.id for a in customer.agents],
            )
            self.customers[customer_id] = customer
            account.customers.append(customer)
            return customer

        names = list(CUSTOMER_NAMES)
        rng.shuffle(names)
        for top_index in range(rng.randint(3, 5)):
            top = add(names[top_index % len(names)], None)
            for child_index in range(rng.choice((0, 1, 2, 3))):
                child = add(f"{top.name} – {SUB_CUSTOMER_SUFFIXES[child_index]}", top)
                for grandchild_index in range(rng.choice((0, 0, 1, 2))):
                    add(f"{child.name} {grandchild_index + 1}", child)
        account.customer_cum = list(accumulate(c.weight for c in account.customers))

    # -- served shapes of the day-independent entities (timestamps as ticks) -----------------

    def account_doc(self, account: Account) -> dict:
        return dict(account.info)

    def customer_doc(self, customer: Customer) -> dict:
        account = self.by_account_id[customer.account_id]
        return {
            "accountId": account.id,
            "parentCustomerId": customer.parent_id,
            "breadcrumb": [dict(c) for c in customer.breadcrumb],
            "accountName": account.name,
            "isStaging": False,
            "name": customer.name,
            "referenceId": f"CRM-{int(customer.id[-6:], 16) % 100000:05d}",
            "data": {},
            "tags": [],
            "id": customer.id,
            "dateCreated": customer.created,
            "dateLastModified": customer.created,
            "createdBy": self.user_id,
            "lastModifiedBy": self.user_id,
        }

    def endpoint_doc(self, endpoint: Endpoint) -> dict:
        customer = self.customers[endpoint.customer_id]
        account = self.by_account_id[endpoint.account_id]
        created = int(endpoint.id[:8], 16) * S
        return {
            "accountId": account.id,
            "accountName": account.name,
            "customerId": customer.id,
            "customerName": customer.name,
            "referenceId": None,
            "customerBreadcrumb": [dict(c) for c in customer.breadcrumb],
            "displayName": endpoint.name,
            "type": endpoint.type,
            "phoneNumber": endpoint.phone_number,
            "emailAddress": endpoint.email,
            "id": endpoint.id,
            "dateCreated": created,
            "dateLastModified": created,
            "createdBy": self.user_id,
            "lastModifiedBy": self.user_id,
        }

    # -- arrivals ----------------------------------------------------------------------------

    def arrival_table(self, day: date) -> tuple[list[float], list[tuple[Account, int]]]:
        """Cumulative weights over (account, UTC hour of ``day``) cells.

        Each cell's weight is the account's share times the business-hours weight of that hour
        in the account's local time (local weekend hours damped by WEEKEND_HOURLY_FACTOR).
        """
        start = day_start_ticks(day)
        cells: list[tuple[Account, int]] = []
        weights: list[float] = []
        for account in self.accounts:
            for hour in range(24):
                moment = start + hour * HOUR
                local = moment + offset_seconds(account.tz, moment) * S
                local_hour = (local // HOUR) % 24
                weekday = (local // TICKS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday
                factor = WEEKEND_HOURLY_FACTOR if weekday >= 5 else 1.0
                cells.append((account, hour))
                weights.append(account.weight * HOURLY_WEIGHTS[local_hour] * factor)
        return list(accumulate(weights)), cells


# -- sessions ----------------------------------------------------------------------------------

MAX_VOICE_SECONDS = 3 * 3600
MAX_CHAT_SECONDS = 8 * 3600
#: No generated session lasts longer than this; the store uses it to know which days "now"
#: can still touch.
MAX_SESSION_TICKS = MAX_CHAT_SECONDS * S + 3600 * S
#: Late edits (notes, dispositions) land at most this long after a session ends.
MAX_LATE_EDIT_TICKS = 2 * TICKS_PER_DAY
NO_TICKS = -1


class SessionRecord:
    """One session as served: its JSON bytes plus what queries filter and sort on.

    ``completed`` is ``NO_TICKS`` while the session is still running; ``parent_id`` is the
    session a transfer leg belongs to (not a served field, but a ListSessions filter).
    """

    __slots__ = (
        "account_id",
        "completed",
        "created",
        "crumb_ids",
        "endpoint_ids",
        "from_text",
        "id",
        "modified",
        "parent_id",
        "raw",
        "to_text",
    )

    def __init__(
        self,
        session_id: str,
        created: int,
        modified: int,
        completed: int,
        account_id: str,
        crumb_ids: tuple[str, ...],
        endpoint_ids: tuple[str, ...],
        parent_id: str | None,
        from_text: str,
        to_text: str,
        raw: bytes,
    ) -> None:
        self.id = session_id
        self.created = created
        self.modified = modified
        self.completed = completed
        self.account_id = account_id
        self.crumb_ids = crumb_ids
        self.endpoint_ids = endpoint_ids
        self.parent_id = parent_id
        self.from_text = from_text
        self.to_text = to_text
        self.raw = raw

    def replaced(self, raw: bytes, **fields: Any) -> SessionRecord:
        """A copy with new JSON and, optionally, new query fields."""
        copy = SessionRecord(
            self.id, self.created, self.modified, self.completed, self.account_id,
            self.crumb_ids, self.endpoint_ids, self.parent_id, self.from_text, self.to_text, raw,
        )  # fmt: skip
        for name, value in fields.items():
            setattr(copy, name, value)
        return copy


def _log_json(fmt_ticks, log: list[tuple[int, str]]) -> str:
    return ",".join([f'{{"date":"{fmt_ticks(t)}","message":"{m}"}}' for t, m in log])


def _agent_member(agent: Endpoint, original: bool, state: str, role: str, sid: str | None,
                  version: str) -> str:  # fmt: skip
    return (
        f'{{"identity":"{agent.id}","endpointId":"{agent.id}","displayName":{agent.js_name},'
        f'"isOriginalMember":{"true" if original else "false"},"avatarUrl":{agent.js_avatar},'
        f'"applicationData":{{"device":"{agent.device}","appVersion":"{version}"}},'
        f'"callState":"{state}","role":"{role}","callSid":{_q(sid)},"muted":false}}'
    )


def _contact_member(contact: Contact, original: bool, state: str, role: str, sid: str | None,
                    source: str) -> str:  # fmt: skip
    display = contact.js_name if contact.name is not None else f'"{contact.number}"'
    return (
        f'{{"identity":"{contact.number}","endpointId":null,"displayName":{display},'
        f'"isOriginalMember":{"true" if original else "false"},"avatarUrl":null,'
        f'"applicationData":{{"carrier":"{contact.carrier}","source":"{source}"}},'
        f'"callState":"{state}","role":"{role}","callSid":{_q(sid)},"muted":false}}'
    )


class SessionFactory:
    """Builds sessions; shared by day generation, drift and test inserts.

    ``fmt`` is the timestamp format name (see :mod:`pipeline.emulator.timefmt`).
    """

    def __init__(self, world: World) -> None:
        self.world = world

    def pick_account(self, rng: random.Random) -> Account:
        cum = self.world.account_cum
        return self.world.accounts[bisect_right(cum, rng.random() * cum[-1])]

    def build(
        self,
        rng: random.Random,
        account: Account,
        created: int,
        session_id: str,
        now: int,
        fmt: str,
        child_id: Callable[[int], str | None] | None = None,
    ) -> list[SessionRecord]:
        """One session created at ``created`` as it stands at ``now``.

        When the call was transferred and ``child_id`` gives an id for a leg starting at that
        instant, the transfer leg follows it in the returned list.
        """
        rand = rng.random
        cum = account.customer_cum
        customer = account.customers[bisect_right(cum, rand() * cum[-1])]
        number = customer.numbers[int(rand() * len(customer.numbers))]
        agents = customer.agents
        agent = agents[int(rand() * len(agents))]
        contact = account.contacts[int(rand() * len(account.contacts))]
        r = rand()
        channel = "Voice" if r < 0.85 else ("Chat" if r < 0.95 else "Fax")
        voice = channel == "Voice"
        incoming = rand() < (0.65 if voice else 0.7 if channel == "Chat" else 0.6)
        via_team = voice and incoming and rand() < 0.6
        team = customer.team
        ring_target = team.jb_name if via_team else agent.jb_name
        from_name, from_name_js, display = contact.name, contact.js_name, contact.jb_display
        if incoming and from_name is None and rand() < 0.3:
            # Carriers fill in a placeholder caller name when they have none (plain ASCII).
            from_name = CNAM_PLACEHOLDERS[int(rand() * 3)]
            from_name_js, display = f'"{from_name}"', from_name
        caller = contact.number
        dialed = number.phone_number

        log: list[tuple[int, str]] = []
        missed = False
        answered_at = 0
        hold: tuple[int, int] | None = None
        transfer_at = 0
        if voice:
            if incoming:
                log.append((created, f"Incoming call from {caller} to {dialed}"))
                ring_start = created + int((0.5 + rand() * 4) * S)
                log.append((ring_start, f"Ringing {ring_target}"))
                if rand() < 0.2:
                    missed = True
                    kind = rand()
                    if kind < 0.45:
                        outcome = "Voicemail"
                        ring_end = ring_start + int((20 + rand() * 10) * S)
                        log.append(
                            (ring_end, f"No answer after {(ring_end - created) // S} seconds")
                        )
                        log.append((ring_end + S // 2, "Sent to voicemail"))
                        message = int((10 + rand() * 80) * S)
                        end = ring_end + S + message
                        log.append((end, f"Voicemail recorded ({message // S} seconds)"))
                    elif kind < 0.8:
                        outcome = "Abandoned"
                        end = ring_start + int((3 + rand() * 37) * S)
                        log.append((end, f"Caller hung up after {(end - created) // S} seconds"))
                    else:
                        outcome = "Missed"
                        end = ring_start + int((20 + rand() * 15) * S)
                        log.append((end, f"No answer after {(end - created) // S} seconds"))
                    end += S // 10
                    log.append((end, "Call ended"))
                else:
                    outcome = "Answered"
                    answered_at = ring_start + int((3 + rand() * 22) * S)
                    log.append((answered_at, f"Call answered by {agent.jb_name}"))
            else:
                log.append((created, f"Outgoing call from {agent.jb_name} to {caller}"))
                ring_start = created + int((0.5 + rand() * 2) * S)
                log.append((ring_start, f"Ringing {caller}"))
                if rand() < 0.75:
                    outcome = "Answered"
                    answered_at = ring_start + int((4 + rand() * 20) * S)
                    log.append((answered_at, "Call answered"))
                else:
                    kind = rand()
                    outcome = "NoAnswer" if kind < 0.6 else ("Busy" if kind < 0.85 else "Failed")
                    end = ring_start + int(((20 + rand() * 15) if kind < 0.6 else rand() * 3) * S)
                    log.append((end, OUTGOING_FAILURES[outcome]))
                    end += S // 10
                    log.append((end, "Call ended"))
            if answered_at:
                # Talk time is log-normal: median ~2.5 min, a long tail of hour-long calls.
                talk = min(MAX_VOICE_SECONDS, max(5.0, math.exp(5.0 + 0.95 * rng.gauss(0.0, 1.0))))
                end = answered_at + int(talk * S)
                if talk > 60 and rand() < 0.1:
                    hold_start = answered_at + int(rand() * (talk - 40) * S)
                    hold = (hold_start, hold_start + int((10 + rand() * 30) * S))
                    log.append((hold[0], f"Call placed on hold by {agent.jb_name}"))
                    log.append((hold[1], f"Call resumed by {agent.jb_name}"))
                if incoming and child_id is not None and len(agents) > 1 and rand() < 0.04:
                    transfer_at = (hold[1] if hold else answered_at) + int((5 + rand() * 20) * S)
                    if transfer_at >= end:
                        transfer_at = 0
                log.append((end, f"Call ended by {'caller' if rand() < 0.55 else 'agent'}"))
        elif channel == "Chat":
            minutes = min(MAX_CHAT_SECONDS / 60, max(0.5, math.exp(3.0 + rng.gauss(0.0, 1.0))))
            end = created + int(minutes * 60 * S)
            if incoming:
                log.append((created, f"SMS received from {caller}"))
                if rand() < 0.1:
                    missed = True
                    outcome = "Unanswered"
                    log.append((end, "Chat closed without reply"))
                else:
                    outcome = "Completed"
                    answered_at = min(created + int((10 + rand() * 300) * S), end - S)
                    log.append((answered_at, f"Chat assigned to {agent.jb_name}"))
                    log.append((answered_at + S, f"Message sent by {agent.jb_name}"))
                    log.append((end, f"Chat closed by {agent.jb_name}"))
            else:
                outcome = "Completed"
                log.append((created, f"Chat started by {agent.jb_name} to {caller}"))
                log.append((created + S, f"Message sent by {agent.jb_name}"))
                log.append((end, f"Chat closed by {agent.jb_name}"))
        else:
            pages = 1 + int(rand() * 12)
            end = created + int((20 + pages * (8 + rand() * 10)) * S)
            failed = rand() < 0.05
            if incoming:
                outcome = "Failed" if failed else "Received"
                log.append((created, f"Incoming fax from {caller}"))
                log.append(
                    (end, "Fax reception failed" if failed else f"Fax received ({pages} pages)")
                )
            else:
                outcome = "Failed" if failed else "Sent"
                log.append((created, f"Outgoing fax to {caller}"))
                log.append((end, "Fax delivery failed" if failed else f"Fax sent ({pages} pages)"))

        ended = end <= now
        if ended:
            call_state = "Disconnected"
            connected = answered_at > 0
        else:
            # In progress at "now": nothing after now has happened yet.
            log = [entry for entry in log if entry[0] <= now]
            connected = 0 < answered_at <= now
            if not voice:
                call_state = "Connected"
            elif not connected:
                call_state = "Ringing"
            elif hold is not None and hold[0] <= now < hold[1]:
                call_state = "Hold"
            else:
                call_state = "Connected"
        held = hold is not None and hold[0] <= now

        call_sid = ("CA%032x" % rng.getrandbits(128)) if channel != "Chat" else None  # noqa: UP031
        agent_sid = ("CA%032x" % rng.getrandbits(128)) if voice and answered_at else None  # noqa: UP031
        version = APP_VERSIONS[int(rand() * 4)]
        source = "pstn" if voice else ("chat" if channel == "Chat" else "fax")
        if ended:
            external_state = agent_state = "None"
        else:
            external_state = "Connected" if incoming or connected or not voice else "Ringing"
            agent_state = call_state if call_state != "Ringing" else "Connected"
        if incoming:
            members = [_contact_member(contact, True, external_state, "Caller", call_sid, source)]
            if connected:
                members.append(
                    _agent_member(agent, False, agent_state, "Agent", agent_sid, version)
                )
        else:
            members = [
                _agent_member(agent, True, agent_state, "Caller", call_sid, version),
                _contact_member(contact, False, external_state, "None",
                                agent_sid if voice else None, source),
            ]  # fmt: skip

        target = None
        if transfer_at and ended:
            target = agents[(agents.index(agent) + 1) % len(agents)]
            log.append((transfer_at, f"Call transferred to {target.jb_name} by {agent.jb_name}"))
            log.sort(key=lambda entry: entry[0])
            target_sid = "CA%032x" % rng.getrandbits(128)  # noqa: UP031
            members.append(
                f'{{"identity":"{target.id}","endpointId":"{target.id}",'
                f'"displayName":{target.js_name},"isOriginalMember":false,'
                f'"avatarUrl":{target.js_avatar},"applicationData":{{"device":"{target.device}"}},'
                f'"callState":"None","role":"Transfer","callSid":"{target_sid}","muted":false}}'
            )

        modified = (log[-1][0] if log else created) + (int(rand() * 3 * S) if ended else 0)
        modified_by = "system"
        if ended and rand() < 0.05:
            late = end + int((60 + rand() * (MAX_LATE_EDIT_TICKS / S - 60)) * S)
            if late <= now:
                modified, modified_by = late, agent.id
        modified = max(created, min(modified, now))

        answered = connected and (incoming or channel == "Chat")
        in_queue = via_team and not ended and not connected
        if incoming:
            from_address = caller
            to_address, destination_js = dialed, "null"
            endpoint = number
        else:
            from_address, from_name, from_name_js = dialed, agent.name, agent.js_name
            to_address = caller
            destination = national_format(caller) if rand() < 0.5 else caller
            destination_js = f'"{destination}"'
            endpoint = agent
        if via_team:
            queue_state = "Ringing" if in_queue else ("Disconnected" if ended else "Connected")
        else:
            queue_state = "None"
        console = (
            f'"{{\\"ticket\\":\\"T-{int(rand() * 99999):05d}\\"}}"' if rand() < 0.05 else "null"
        )
        hold_queue = f'"{HOLD_QUEUES[int(rand() * 3)]}"' if held else "null"
        callback = f'"{dialed}"' if voice and not incoming and rand() < 0.3 else "null"
        conference = ("CF%032x" % rng.getrandbits(128)) if voice and connected else None  # noqa: UP031
        f = formatter_for(fmt, account.tz, session_id)
        dial_state = "Active" if not ended and not incoming and not connected else "None"
        completed_js = f'"{f(end)}"' if ended else "null"
        text = (
            f'{{"dialState":"{dial_state}",'
            f'"callState":"{call_state}","queueState":"{queue_state}",{customer.json_prefix}'
            f'"endpointId":"{endpoint.id}","endpointName":{endpoint.js_name},'
            f'"dateCompleted":{completed_js},"destination":{destination_js},'
            f'"toAddress":"{to_address}","fromAddress":"{from_address}","fromName":{from_name_js},'
            f'"answeredByName":{agent.js_name if answered else "null"},'
            f'"queueMemberId":{_q(agent.id if via_team and answered else None)},'
            f'"channel":"{channel}","ended":{"true" if ended else "false"},'
            f'"outcome":{_q(outcome if ended else None)},"callSid":{_q(call_sid)},'
            f'"consoleData":{console},"holdQueueName":{hold_queue},'
            f'"heldByUserId":{_q(agent.id if held else None)},'
            f'"holdReason":"{"Transferring" if target else "None"}",'
            f'"conferenceSid":{_q(conference)},"displayName":"{display}",'
            f'"log":[{_log_json(f, log)}],"members":[{",".join(members)}],'
            f'"callbackNumber":{callback},"answeredById":{_q(agent.id if answered else None)},'
            f'"direction":"{"Incoming" if incoming else "Outgoing"}",'
            f'"fromPhoneNumber":{_q(caller if channel == "Chat" else None)},'
            f'"mostRecentParticipantCallSid":{_q(agent_sid if connected else None)},'
            f'"wasMissed":{"true" if missed and ended else "false"},'
            f'"ringQueueId":{_q(team.id if in_queue else None)},"id":"{session_id}",'
            f'"dateCreated":"{f(created)}","dateLastModified":"{f(modified)}",'
            f'"createdBy":"{"system" if incoming else agent.id}","lastModifiedBy":"{modified_by}"}}'
        )
        endpoint_ids = (endpoint.id, agent.id) if connected or not incoming else (endpoint.id,)
        if target is not None:
            endpoint_ids = (*endpoint_ids, target.id)
        record = SessionRecord(
            session_id,
            created,
            modified,
            end if ended else NO_TICKS,
            account.id,
            customer.crumb_ids,
            endpoint_ids,
            None,
            f"{from_address}\n{from_name or ''}".lower(),
            f"{to_address}\n{'' if incoming else destination}".lower(),
            text.encode(),
        )
        leg_id = child_id(transfer_at) if target is not None and child_id is not None else None
        if leg_id is None:
            return [record]
        child = self._transfer_leg(rng, account, customer, number, agent, target, transfer_at,
                                   end, leg_id, session_id, fmt, version)  # fmt: skip
        return [record, child]

    @staticmethod
    def _transfer_leg(rng: random.Random, account: Account, customer: Customer, number: Endpoint,
                      agent: Endpoint, target: Endpoint, start: int, end: int, session_id: str,
                      parent_id: str, fmt: str, version: str) -> SessionRecord:  # fmt: skip
        """The outgoing leg an agent opens to hand a call over to a colleague."""
        answered = rng.random() < 0.85
        answered_at = start + int((2 + rng.random() * 10) * S)
        if answered_at >= end:
            answered_at = start + (end - start) // 2
        finish = end if answered else answered_at
        modified = finish + int(rng.random() * S)
        sid = "CA%032x" % rng.getrandbits(128)  # noqa: UP031
        log = [
            (start, f"Transfer call from {agent.jb_name} to {target.jb_name}"),
            (answered_at, f"Call answered by {target.jb_name}" if answered else "No answer"),
            (finish, "Call ended"),
        ]
        members = [
            _agent_member(agent, True, "None", "Caller", sid, version),
            f'{{"identity":"{target.id}","endpointId":"{target.id}",'
            f'"displayName":{target.js_name},"isOriginalMember":false,'
            f'"avatarUrl":{target.js_avatar},"applicationData":{{"device":"{target.device}"}},'
            f'"callState":"None","role":"Transfer","callSid":null,"muted":false}}',
        ]
        f = formatter_for(fmt, account.tz, session_id)
        text = (
            f'{{"dialState":"None","callState":"Disconnected","queueState":"None",'
            f'{customer.json_prefix}"endpointId":"{agent.id}","endpointName":{agent.js_name},'
            f'"dateCompleted":"{f(finish)}","destination":{target.js_name},'
            f'"toAddress":"{target.id}","fromAddress":"{number.phone_number}",'
            f'"fromName":{agent.js_name},"answeredByName":{target.js_name if answered else "null"},'
            f'"queueMemberId":null,"channel":"Voice","ended":true,'
            f'"outcome":"{"Answered" if answered else "NoAnswer"}","callSid":"{sid}",'
            f'"consoleData":null,"holdQueueName":null,"heldByUserId":null,"holdReason":"None",'
            f'"conferenceSid":null,"displayName":"Transfer to {target.jb_name}",'
            f'"log":[{_log_json(f, log)}],"members":[{",".join(members)}],'
            f'"callbackNumber":null,"answeredById":{_q(target.id if answered else None)},'
            f'"direction":"Outgoing","fromPhoneNumber":null,'
            f'"mostRecentParticipantCallSid":{_q(sid if answered else None)},"wasMissed":false,'
            f'"ringQueueId":null,"id":"{session_id}","dateCreated":"{f(start)}",'
            f'"dateLastModified":"{f(modified)}","createdBy":"{agent.id}",'
            f'"lastModifiedBy":"system"}}'
        )
        return SessionRecord(
            session_id,
            start,
            modified,
            finish,
            account.id,
            customer.crumb_ids,
            (agent.id, target.id),
            parent_id,
            f"{number.phone_number}\n{agent.name}".lower(),
            f"{target.id}\n{target.name}".lower(),
            text.encode(),
        )


def sessions_for_day_count(sessions_per_day: int, weekend_factor: float, day: date) -> int:
    """How many sessions are created on the UTC ``day``."""
    if day.weekday() >= 5:
        return round(sessions_per_day * weekend_factor)
    return sessions_per_day


def make_session_id(created: int, process: int, counter: int) -> str:
    """A Mongo-ObjectId-shaped id: creation second, a per-stream 5-byte value, a 3-byte counter."""
    return f"{created // S:08x}{process:010x}{counter & 0xFFFFFF:06x}"


def generate_day(
    factory: SessionFactory, seed: int, day: date, count: int, now: int, fmt: str
) -> list[SessionRecord]:
    """All sessions created on the UTC ``day``, ordered by ``dateCreated``.

    Depends only on ``(seed, day, count)`` and -- for sessions still running or edited near it
    -- on ``now``; sessions created after ``now`` do not exist yet. The timestamp format only
    changes how instants are written.
    """
    rng = random.Random(f"evo-emulator/day/{seed}/{day.isoformat()}")
    rand = rng.random
    process = rng.getrandbits(40)
    cum, cells = factory.world.arrival_table(day)
    total = cum[-1]
    start = day_start_ticks(day)
    arrivals = []
    for _ in range(count):
        account, hour = cells[bisect_right(cum, rand() * total)]
        arrivals.append((start + hour * HOUR + int(rand() * HOUR), account))
    arrivals.sort(key=lambda item: item[0])
    day_end = start + TICKS_PER_DAY
    legs = 0

    def leg_id(leg_created: int) -> str | None:
        nonlocal legs
        # A transfer leg starting on the next UTC day would belong to that day's stream;
        # leaving it out keeps every day independent of its neighbours.
        if leg_created >= day_end or leg_created > now:
            return None
        legs += 1
        return make_session_id(leg_created, process, count + legs)

    out: list[SessionRecord] = []
    build = factory.build
    for counter, (created, account) in enumerate(arrivals):
        if created > now:
            break
        out.extend(build(rng, account, created, make_session_id(created, process, counter),
                         now, fmt, leg_id))  # fmt: skip
    out.sort(key=lambda record: record.created)
    return out
