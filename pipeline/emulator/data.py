"""Deterministic, realistic Evo Voice data: accounts, customers, endpoints and sessions.

Two layers:

* :class:`World` is everything that does not depend on the day: the accounts (the first one a
  reseller parenting the others), each account's customer tree (1-3 levels), its endpoints
  (phone numbers, users, teams) and a pool of outside contacts who call in and are called. It is
  built once from the seed.
* :func:`generate_day` makes the sessions created on one UTC day from ``(seed, day)`` alone, so
  days can be generated lazily, in any order, and always come out the same. Sessions follow a
  business-hours arrival curve in each account's own time zone.

Sessions come out in *canonical* form: the served camelCase dict, except that every timestamp
(``dateCreated``, ``dateLastModified``, ``dateCompleted``, ``log[].date``) is an ``int`` of
ticks (see :mod:`pipeline.emulator.timefmt`); the store renders them per the format knob.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date
from itertools import accumulate
from typing import Any

from pipeline.emulator.timefmt import (
    TICKS_PER_DAY,
    TICKS_PER_SECOND,
    day_start_ticks,
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
    contacts: list[tuple[str | None, str, str]] = field(default_factory=list)


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
    EPOCH_TICKS = ticks_from_datetime(__import__("datetime").datetime(2021, 3, 1, 12, 0))

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
                (
                    None if rng.random() < 0.3 else person_name(rng),
                    phone_number(rng, account.country if rng.random() < 0.9 else "US"),
                    rng.choice(CARRIERS),
                )
                for _ in range(1500)
            ]
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
        in the account's local time (weekends at 30 %).
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
                factor = 0.3 if weekday >= 5 else 1.0
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


class SessionFactory:
    """Builds sessions for one account stream; shared by day generation, drift and inserts."""

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
        child_id: str | None = None,
    ) -> list[tuple[dict, str | None]]:
        """One session created at ``created`` (plus a transfer child when ``child_id`` is given
        and the call is transferred). Returns ``[(canonical doc, parent id or None), ...]``."""
        rand = rng.random
        customer = account.customers[
            bisect_right(account.customer_cum, rand() * account.customer_cum[-1])
        ]
        number = customer.numbers[int(rand() * len(customer.numbers))]
        agents = customer.agents
        agent = agents[int(rand() * len(agents))]
        contact_name, contact_number, carrier = account.contacts[
            int(rand() * len(account.contacts))
        ]
        r = rand()
        channel = "Voice" if r < 0.85 else ("Chat" if r < 0.95 else "Fax")
        incoming = rand() < (0.65 if channel == "Voice" else 0.7 if channel == "Chat" else 0.6)
        via_team = incoming and rand() < 0.6
        team = customer.team
        ring_target = team.name if via_team else agent.name
        if incoming and contact_name is None and rand() < 0.3:
            contact_name = CNAM_PLACEHOLDERS[int(rand() * 3)]

        log: list[tuple[int, str]] = []
        missed = False
        answered_at = 0
        hold: tuple[int, int] | None = None
        transfer_at = 0
        outcome: str
        if channel == "Voice":
            if incoming:
                log.append(
                    (created, f"Incoming call from {contact_number} to {number.phone_number}")
                )
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
                    log.append((end + S // 10, "Call ended"))
                    end += S // 10
                else:
                    outcome = "Answered"
                    answered_at = ring_start + int((3 + rand() * 22) * S)
                    log.append((answered_at, f"Call answered by {agent.name}"))
            else:
                log.append((created, f"Outgoing call from {agent.name} to {contact_number}"))
                ring_start = created + int((0.5 + rand() * 2) * S)
                log.append((ring_start, f"Ringing {contact_number}"))
                if rand() < 0.75:
                    outcome = "Answered"
                    answered_at = ring_start + int((4 + rand() * 20) * S)
                    log.append((answered_at, "Call answered"))
                else:
                    kind = rand()
                    outcome = "NoAnswer" if kind < 0.6 else ("Busy" if kind < 0.85 else "Failed")
                    end = ring_start + int(((20 + rand() * 15) if kind < 0.6 else rand() * 3) * S)
                    log.append((end, OUTGOING_FAILURES[outcome]))
                    log.append((end + S // 10, "Call ended"))
                    end += S // 10
            if answered_at:
                talk = min(MAX_VOICE_SECONDS, max(5.0, math.exp(5.0 + 0.95 * rng.gauss(0.0, 1.0))))
                end = answered_at + int(talk * S)
                if talk > 60 and rand() < 0.1:
                    hold_start = answered_at + int(rand() * (talk - 40) * S)
                    hold = (hold_start, hold_start + int((10 + rand() * 30) * S))
                    log.append((hold[0], f"Call placed on hold by {agent.name}"))
                    log.append((hold[1], f"Call resumed by {agent.name}"))
                if incoming and child_id is not None and len(agents) > 1 and rand() < 0.04:
                    transfer_at = (hold[1] if hold else answered_at) + int((5 + rand() * 20) * S)
                    if transfer_at >= end:
                        transfer_at = 0
                who = "caller" if rand() < 0.55 else "agent"
                log.append((end, f"Call ended by {who}"))
        elif channel == "Chat":
            minutes = min(
                MAX_CHAT_SECONDS / 60, max(0.5, math.exp(3.0 + 1.0 * rng.gauss(0.0, 1.0)))
            )
            end = created + int(minutes * 60 * S)
            if incoming:
                log.append((created, f"SMS received from {contact_number}"))
                if rand() < 0.1:
                    missed = True
                    outcome = "Unanswered"
                    log.append((end, "Chat closed without reply"))
                else:
                    outcome = "Completed"
                    answered_at = created + int((10 + rand() * 300) * S)
                    answered_at = min(answered_at, end - S)
                    log.append((answered_at, f"Chat assigned to {agent.name}"))
                    log.append((answered_at + S, f"Message sent by {agent.name}"))
                    log.append((end, f"Chat closed by {agent.name}"))
            else:
                outcome = "Completed"
                log.append((created, f"Chat started by {agent.name} to {contact_number}"))
                log.append((created + S, f"Message sent by {agent.name}"))
                log.append((end, f"Chat closed by {agent.name}"))
        else:
            pages = 1 + int(rand() * 12)
            end = created + int((20 + pages * (8 + rand() * 10)) * S)
            failed = rand() < 0.05
            if incoming:
                log.append((created, f"Incoming fax from {contact_number}"))
                outcome = "Failed" if failed else "Received"
                log.append(
                    (end, "Fax reception failed" if failed else f"Fax received ({pages} pages)")
                )
            else:
                log.append((created, f"Outgoing fax to {contact_number}"))
                outcome = "Failed" if failed else "Sent"
                log.append((end, "Fax delivery failed" if failed else f"Fax sent ({pages} pages)"))

        active = end > now
        ended = not active
        if active:
            # In progress at "now": nothing after now has happened yet.
            log = [entry for entry in log if entry[0] <= now]
            if channel == "Voice":
                if answered_at and answered_at <= now:
                    on_hold = hold is not None and hold[0] <= now < hold[1]
                    call_state = "Hold" if on_hold else "Connected"
                else:
                    call_state = "Ringing"
            else:
                call_state = "Connected"
            connected = answered_at and answered_at <= now
        else:
            call_state = "Disconnected"
            connected = answered_at > 0

        voice = channel == "Voice"
        call_sid = ("CA" + _hex(rng, 32)) if channel != "Chat" else None
        agent_sid = ("CA" + _hex(rng, 32)) if voice and answered_at else None
        external = {
            "identity": contact_number,
            "endpointId": None,
            "displayName": contact_name or contact_number,
            "isOriginalMember": incoming,
            "avatarUrl": None,
            "applicationData": {"carrier": carrier, "source": "pstn" if voice else channel.lower()},
            "callState": "None",
            "role": "Caller" if incoming else "None",
            "callSid": call_sid if incoming else (agent_sid if voice else None),
            "muted": False,
        }
        agent_member = {
            "identity": agent.id,
            "endpointId": agent.id,
            "displayName": agent.name,
            "isOriginalMember": not incoming,
            "avatarUrl": agent.avatar_url,
            "applicationData": {
                "device": agent.device,
                "appVersion": APP_VERSIONS[int(rand() * 4)],
            },
            "callState": "None",
            "role": "Agent" if incoming else "Caller",
            "callSid": agent_sid if incoming else call_sid,
            "muted": False,
        }
        if active:
            external["callState"] = (
                "Connected" if incoming or connected else ("Ringing" if voice else "Connected")
            )
            if connected or not incoming:
                agent_member["callState"] = call_state if call_state != "Disconnected" else "None"
                if call_state == "Ringing":
                    agent_member["callState"] = "Connected"
        if incoming:
            members = [external, agent_member] if connected else [external]
        else:
            members = [agent_member, external]

        children: list[tuple[dict, str | None]] = []
        transfer_target = None
        if transfer_at and ended:
            transfer_target = agents[(agents.index(agent) + 1) % len(agents)]
            log.append((transfer_at, f"Call transferred to {transfer_target.name} by {agent.name}"))
            log.sort(key=lambda entry: entry[0])
            members.append(
                {
                    "identity": transfer_target.id,
                    "endpointId": transfer_target.id,
                    "displayName": transfer_target.name,
                    "isOriginalMember": False,
                    "avatarUrl": transfer_target.avatar_url,
                    "applicationData": {"device": transfer_target.device},
                    "callState": "None",
                    "role": "Transfer",
                    "callSid": "CA" + _hex(rng, 32),
                    "muted": False,
                }
            )

        modified = (log[-1][0] if log else created) + (int(rand() * 3 * S) if ended else 0)
        modified_by = "system"
        if ended and rand() < 0.05:
            late = end + int((60 + rand() * (MAX_LATE_EDIT_TICKS / S - 60)) * S)
            if late <= now:
                modified, modified_by = late, agent.id
        if modified > now:
            modified = max(created, now)

        if incoming:
            from_address, from_name = contact_number, contact_name
            to_address, destination = number.phone_number, None
        else:
            from_address, from_name = number.phone_number, agent.name
            to_address = contact_number
            destination = national_format(contact_number) if rand() < 0.5 else contact_number
        display = from_name or from_address if incoming else contact_name or contact_number
        answered = connected and (incoming or channel == "Chat")
        in_queue = via_team and active and not connected
        doc = {
            "dialState": "Active" if active and not incoming and not connected else "None",
            "callState": call_state,
            "queueState": (
                ("Ringing" if in_queue else "Connected" if active else "Disconnected")
                if via_team and voice
                else "None"
            ),
            "accountId": account.id,
            "accountName": account.name,
            "customerId": customer.id,
            "customerBreadcrumb": customer.breadcrumb,
            "customerName": customer.name,
            "endpointId": number.id if incoming else agent.id,
            "endpointName": number.name if incoming else agent.name,
            "dateCompleted": end if ended else None,
            "destination": destination,
            "toAddress": to_address,
            "fromAddress": from_address,
            "fromName": from_name,
            "answeredByName": agent.name if answered else None,
            "queueMemberId": agent.id if via_team and answered else None,
            "channel": channel,
            "ended": ended,
            "outcome": outcome if ended else None,
            "callSid": call_sid,
            "consoleData": f'{{"ticket":"T-{int(rand() * 99999):05d}"}}' if rand() < 0.05 else None,
            "holdQueueName": HOLD_QUEUES[int(rand() * 3)] if hold and hold[0] <= now else None,
            "heldByUserId": agent.id if hold and hold[0] <= now else None,
            "holdReason": "Transferring" if transfer_target else "None",
            "conferenceSid": ("CF" + _hex(rng, 32)) if voice and connected else None,
            "displayName": display,
            "log": [{"date": when, "message": message} for when, message in log],
            "members": members,
            "callbackNumber": number.phone_number
            if voice and not incoming and rand() < 0.3
            else None,
            "answeredById": agent.id if answered else None,
            "direction": "Incoming" if incoming else "Outgoing",
            "fromPhoneNumber": contact_number if channel == "Chat" else None,
            "mostRecentParticipantCallSid": agent_sid if connected else None,
            "wasMissed": missed and ended,
            "ringQueueId": team.id if in_queue and voice else None,
            "id": session_id,
            "dateCreated": created,
            "dateLastModified": modified,
            "createdBy": "system" if incoming else agent.id,
            "lastModifiedBy": modified_by,
        }
        if transfer_target is not None and child_id is not None:
            children.append(
                (
                    self._transfer_child(
                        rng, doc, agent, transfer_target, transfer_at, end, child_id, number
                    ),
                    session_id,
                )
            )
        return [(doc, None), *children]

    @staticmethod
    def _transfer_child(
        rng: random.Random,
        parent: dict,
        agent: Endpoint,
        target: Endpoint,
        start: int,
        end: int,
        child_id: str,
        number: Endpoint,
    ) -> dict:
        """The outgoing leg an agent opens to hand a call over to a colleague."""
        answered = rng.random() < 0.85
        answered_at = start + int((2 + rng.random() * 10) * S)
        if answered_at >= end:
            answered_at = start + (end - start) // 2
        finish = end if answered else answered_at
        log = [
            {"date": start, "message": f"Transfer call from {agent.name} to {target.name}"},
            {
                "date": answered_at,
                "message": f"Call answered by {target.name}" if answered else "No answer",
            },
            {"date": finish, "message": "Call ended"},
        ]
        sid = "CA" + _hex(rng, 32)
        return {
            **parent,
            "dialState": "None",
            "callState": "Disconnected",
            "queueState": "None",
            "endpointId": agent.id,
            "endpointName": agent.name,
            "dateCompleted": finish,
            "destination": target.name,
            "toAddress": target.id,
            "fromAddress": number.phone_number,
            "fromName": agent.name,
            "answeredByName": target.name if answered else None,
            "queueMemberId": None,
            "outcome": "Answered" if answered else "NoAnswer",
            "callSid": sid,
            "consoleData": None,
            "holdQueueName": None,
            "heldByUserId": None,
            "holdReason": "None",
            "displayName": f"Transfer to {target.name}",
            "log": log,
            "members": [
                {**parent["members"][1], "role": "Caller", "callSid": sid},
                {**parent["members"][-1]},
            ],
            "callbackNumber": None,
            "answeredById": target.id if answered else None,
            "direction": "Outgoing",
            "fromPhoneNumber": None,
            "mostRecentParticipantCallSid": parent["members"][-1]["callSid"],
            "wasMissed": False,
            "ringQueueId": None,
            "id": child_id,
            "dateCreated": start,
            "dateLastModified": finish + int(rng.random() * S),
            "createdBy": agent.id,
            "lastModifiedBy": "system",
        }


def sessions_for_day_count(sessions_per_day: int, weekend_factor: float, day: date) -> int:
    """How many sessions are created on the UTC ``day``."""
    if day.weekday() >= 5:
        return round(sessions_per_day * weekend_factor)
    return sessions_per_day


def make_session_id(created: int, process: int, counter: int) -> str:
    """A Mongo-ObjectId-shaped id: creation second, a per-stream 5-byte value, a 3-byte counter."""
    return f"{created // S:08x}{process:010x}{counter & 0xFFFFFF:06x}"


def generate_day(
    factory: SessionFactory, seed: int, day: date, count: int, now: int
) -> list[tuple[dict, str | None, str]]:
    """All sessions created on the UTC ``day``, as ``(canonical doc, parent id, account tz)``.

    Depends only on ``(seed, day, count)`` and, for sessions still running or edited near it,
    on ``now``; sessions created after ``now`` are left out.
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
    out: list[tuple[dict, str | None, str]] = []
    children = 0
    build = factory.build
    for counter, (created, account) in enumerate(arrivals):
        if created > now:
            break
        session_id = make_session_id(created, process, counter)
        child_id = make_session_id(created, process, count + children)
        for doc, parent_id in build(rng, account, created, session_id, now, child_id):
            if parent_id is not None:
                # A child that would start on the next UTC day belongs to that day's stream;
                # it is dropped rather than letting one day's data depend on another's.
                if doc["dateCreated"] >= day_end or doc["dateCreated"] > now:
                    continue
                doc["id"] = make_session_id(doc["dateCreated"], process, count + children)
                children += 1
            out.append((doc, parent_id, account.tz))
    out.sort(key=lambda item: item[0]["dateCreated"])
    return out
