"""Deterministic generator of realistic decision traces (``decisiongraph seed``, benchmarks).

Why this exists: demos, the ``seed`` command and the benchmarks need large event logs
that look like real agent decisions -- shared customers and services, exceptions,
approvals, failed actions, precedent citations -- so that the projections, the context
graph and precedent search are exercised the way production data would exercise them.

Design constraints, and why:

* **Deterministic.** Benchmarks and digests must be reproducible, so every random
  choice comes from one ``random.Random(seed)`` (never the global generator, ``uuid4``
  or the clock), and only integer-valued draws or exact comparisons of ``random()``
  are used, so no platform-dependent float maths influences the output. UUID-looking
  ids are built from ``getrandbits(128)``.
* **Streaming.** A generator yields one trace at a time; state kept across traces is
  bounded (the last :data:`PRECEDENT_HISTORY` finished trace ids per workflow, plus a
  clock). Entity pools are never materialized: an entity's attributes are a pure
  function of its pool index and a per-seed salt, so the same customer always has the
  same industry without being remembered.
* **Always appendable.** Every envelope passes append validation (spec section 5):
  required payload fields are non-empty, payloads contain no floats (numbers travel as
  strings inside Value objects, or as ints), and no string contains a substring the
  PII / secret guard rejects. That guard is case-insensitive substring matching, so
  innocent words such as ``desk-1`` (``sk-``) or ``Asia`` are avoided: the vocabulary
  uses ``snake_case`` and ``:`` separators, and ids are lowercase hex.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from math import isqrt
from random import Random
from typing import Any, Final

__all__ = ["PRECEDENT_HISTORY", "SEED_SYSTEM", "WORKFLOWS", "Workflow", "generate_events"]

JSON = dict[str, Any]

#: ``source.system`` of every generated event, so seeded data is easy to recognize.
SEED_SYSTEM: Final = "decisiongraph-seed"
#: How many finished trace ids per workflow are remembered as precedent candidates.
PRECEDENT_HISTORY: Final = 200

_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
_SEVERITY: Final = {"allow": 0, "require_exception": 1, "deny": 2}
_REGIONS: Final = ("emea", "amer", "apac", "latam")


# ---------------------------------------------------------------------------
# Small builders for the value objects of spec section 2 / 11.3 (all keys present).
# ---------------------------------------------------------------------------


def _value(type_: str, value: str) -> JSON:
    return {"type": type_, "value": value}


def _fact(key: str, type_: str, value: str, as_of: str | None) -> JSON:
    return {"key": key, "value": _value(type_, value), "as_of": as_of}


def _entity(entity_type: str, entity_id: str, system: str | None) -> JSON:
    return {"entity_type": entity_type, "entity_id": entity_id, "system": system}


def _source_obj(system: str, object_type: str, object_id: str, locator: str | None = None) -> JSON:
    return {
        "system": system,
        "object_type": object_type,
        "object_id": object_id,
        "locator": locator,
    }


def _change(path: str, old: JSON | None, new: JSON) -> JSON:
    return {"path": path, "old_value": old, "new_value": new}


def _violation(code: str, message: str, details: dict[str, str]) -> JSON:
    return {"code": code, "message": message, "details": details}


def _policy(policy_id: str, policy_version: str) -> JSON:
    return {"policy_id": policy_id, "policy_version": policy_version}


def _clone(value: Any) -> Any:
    """Copy nested dicts/lists, so no two yielded events share a mutable object.

    Cases reuse refs (the primary entity, a policy, an action's changes) in several
    events; a consumer that mutates one event must not silently change another.
    """
    if isinstance(value, dict):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clone(item) for item in value]
    return value


def _money(cents: int) -> str:
    """Render cents as a decimal string: amounts must never be floats (spec section 5)."""
    return f"{cents // 100}.{cents % 100:02d}"


def _hex(rng: Random, digits: int) -> str:
    """Lowercase hex id fragment; hex cannot spell any guarded pattern."""
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


_UUID_CLEAR: Final = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET: Final = (0x4000 << 64) | (0x8000 << 48)


def _uuid(rng: Random) -> str:
    """A lowercase UUID4 string from 128 RNG bits.

    Same result as ``str(uuid.UUID(int=bits, version=4))`` (version and variant bits
    forced), formatted by hand because ``uuid.UUID`` dominated the generator's profile.
    """
    text = f"{(rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class _Stamper:
    """Formats ``base + seconds`` as ``YYYY-MM-DDTHH:MM:SSZ``.

    The date part comes from datetime arithmetic and is cached per day; the time of day
    is integer arithmetic. Output equals ``strftime("%Y-%m-%dT%H:%M:%SZ")``, which was
    the single most expensive call per event.
    """

    __slots__ = ("_cached_day", "_cached_text", "_midnight", "_offset")

    def __init__(self, base: datetime) -> None:
        self._midnight = base.replace(hour=0, minute=0, second=0, microsecond=0)
        self._offset = base.hour * 3600 + base.minute * 60 + base.second
        self._cached_day: int | None = None
        self._cached_text = ""

    def __call__(self, seconds: int) -> str:
        day, rest = divmod(self._offset + seconds, 86400)
        if day != self._cached_day:
            self._cached_day = day
            self._cached_text = (self._midnight + timedelta(days=day)).strftime("%Y-%m-%d")
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        return f"{self._cached_text}T{hours:02d}:{minutes:02d}:{secs:02d}Z"


def _skewed_index(rng: Random, size: int) -> int:
    """Pick a pool index, favouring low indices so some entities become hubs.

    The minimum of two uniform draws is integer-only (no float maths), hence
    identical on every platform.
    """
    return min(rng.randrange(size), rng.randrange(size))


def _trait(options: Sequence[str], index: int, salt: int, k: int) -> str:
    """A stable attribute of pool entity ``index``: same entity, same answer, no storage."""
    mixed = ((index + 1) * 2654435761 + salt * 40503 + k * 2246822519) & 0xFFFFFFFF
    return options[(mixed >> 7) % len(options)]


# ---------------------------------------------------------------------------
# Case description: what a workflow decided; the driver turns it into events.
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Input:
    name: str
    source: JSON
    facts: list[JSON]


@dataclass(slots=True)
class _Check:
    policy: JSON
    inputs: list[str]
    decision: str
    summary: str
    violations: list[JSON] = field(default_factory=list)


@dataclass(slots=True)
class _Action:
    action_type: str
    target_entity: JSON
    target_system: str
    changes: list[JSON]
    external_reference: str
    error: str


@dataclass(slots=True)
class _Case:
    """Everything a workflow decided about one trace, before any event exists.

    Workflows only describe *what* happened (entities, inputs, policy results, the
    action); the shared driver decides the event order, exception/approval/retry paths
    and timing. That keeps the four workflows short and their traces structurally alike,
    as real producers using one facade would be.
    """

    title: str
    subject: str
    primary: JSON
    primary_facts: list[JSON]
    context: dict[str, str]
    related: list[tuple[JSON, list[JSON]]]
    inputs: list[_Input]
    checks: list[_Check]
    exception_reason: str
    evidence: list[JSON]
    approvers: Sequence[tuple[str, str]]
    action: _Action
    precedent_reasons: Sequence[str]


@dataclass(slots=True)
class _Ctx:
    """What a workflow case builder may use: the RNG, pool size, salt and trace clock."""

    rng: Random
    pool: int
    salt: int
    trace_id: str
    start: int  # stream clock (seconds after base_time) of the TraceStarted event
    stamp: _Stamper
    region: str

    def ago(self, minutes: int) -> str:
        """A fact's ``as_of``: some minutes before the trace started."""
        return self.stamp(self.start - minutes * 60)

    def pick(self) -> int:
        return _skewed_index(self.rng, self.pool)


@dataclass(frozen=True, slots=True)
class Workflow:
    """One decision workflow: its producer identity and how to build a case."""

    name: str
    producer_id: str
    subsystem: str
    agent_id: str
    weight: int
    build: Callable[[_Ctx], _Case]


# ---------------------------------------------------------------------------
# Workflow 1: discount approvals at the deal desk.
# ---------------------------------------------------------------------------

_COMPANY_A: Final = (
    "Northwind", "Contoso", "Fabrikam", "Globex", "Initech", "Umbrella", "Hooli",
    "Vandelay", "Wonka", "Tyrell", "Cyberdyne", "Soylent", "Pied Piper", "Acme",
    "Gringotts", "Oscorp", "Monarch", "Dunder", "Prestige", "Bluth",
)  # fmt: skip
_COMPANY_B: Final = (
    "Health", "Retail", "Logistics", "Labs", "Foods", "Energy", "Media", "Capital",
    "Systems", "Motors", "Pharma", "Airlines", "Bank", "Holdings",
)  # fmt: skip
_INDUSTRIES: Final = (
    "healthcare", "retail", "fintech", "manufacturing", "education", "logistics",
    "media", "public_sector", "energy", "insurance",
)  # fmt: skip
_SEGMENTS: Final = ("enterprise", "mid_market", "smb")
_DISCOUNT_CAP: Final = {"enterprise": 20, "mid_market": 15, "smb": 10}


def _company(index: int, salt: int) -> str:
    span = len(_COMPANY_A) * len(_COMPANY_B)
    shifted = index + salt % span
    first = _COMPANY_A[shifted % len(_COMPANY_A)]
    second = _COMPANY_B[(shifted // len(_COMPANY_A)) % len(_COMPANY_B)]
    name = f"{first} {second}"
    return name if index < span else f"{name} {index // span + 1}"


def _discount_case(ctx: _Ctx) -> _Case:
    rng = ctx.rng
    idx = ctx.pick()
    name = _company(idx, ctx.salt)
    industry = _trait(_INDUSTRIES, idx, ctx.salt, 1)
    segment = _trait(_SEGMENTS, idx, ctx.salt, 2)
    cap = _DISCOUNT_CAP[segment]
    account = _entity("account", f"sf:acct:{idx:06d}", "salesforce")
    opp = _entity("opportunity", f"sf:opp:{_hex(rng, 10)}", "salesforce")
    deal_value = rng.randrange(10, 2000) * 1000
    term = rng.choice((12, 24, 36))
    pct = rng.randint(max(2, cap - 12), cap + 22)
    quote_id = f"cpq:quote:{_hex(rng, 8)}"
    inputs = [
        _Input(
            "crm.deal_value",
            _source_obj("salesforce", "opportunity", opp["entity_id"]),
            [
                _fact("deal_value", "int", str(deal_value), ctx.ago(rng.randint(5, 600))),
                _fact("term_months", "int", str(term), ctx.ago(rng.randint(5, 600))),
            ],
        ),
        _Input(
            "cpq.requested_discount",
            _source_obj("cpq", "quote", quote_id),
            [
                _fact("requested_discount_pct", "decimal", f"{pct}.0", ctx.ago(rng.randint(1, 90))),
                _fact("list_price", "decimal", _money(deal_value * 100), None),
            ],
        ),
    ]
    if pct <= cap:
        check = _Check(
            _policy("discount_cap", "3.2"),
            [],
            "allow",
            f"Requested {pct}% is within the {cap}% cap for {segment} accounts.",
        )
    elif pct <= cap + 15:
        check = _Check(
            _policy("discount_cap", "3.2"),
            [],
            "require_exception",
            f"Requested {pct}% exceeds the {cap}% cap; exception approval required.",
            [
                _violation(
                    "CAP_EXCEEDED",
                    "Requested discount is above the segment cap.",
                    {"cap": f"{cap}%", "requested": f"{pct}%"},
                )
            ],
        )
    else:
        check = _Check(
            _policy("discount_cap", "3.2"),
            [],
            "deny",
            f"Requested {pct}% is above the hard ceiling of {cap + 15}%.",
            [
                _violation(
                    "HARD_CEILING_EXCEEDED",
                    "Discount above the hard ceiling cannot be granted.",
                    {"ceiling": f"{cap + 15}%", "requested": f"{pct}%"},
                )
            ],
        )
    check.inputs = [
        f"input:crm.deal_value:{ctx.trace_id}",
        f"input:cpq.requested_discount:{ctx.trace_id}",
    ]
    checks = [check]
    if term == 36 and rng.random() < 0.5:
        checks.append(
            _Check(
                _policy("multi_year_terms", "1.0"),
                [f"input:crm.deal_value:{ctx.trace_id}"],
                "allow",
                "Three-year term with annual billing is standard.",
            )
        )
    industry_words = industry.replace("_", " ")
    reasons = (
        f"{industry_words.capitalize()} procurement cycle; competing offer on the table.",
        f"Strategic {segment.replace('_', ' ')} logo in {ctx.region.upper()}; expansion expected.",
        "Renewal at risk after service incidents last quarter.",
        "Volume commitment justifies a deeper discount.",
    )
    evidence: list[JSON] = []
    if rng.random() < 0.4:
        evidence.append(
            {
                "source": _source_obj("gong", "call", f"gong:call:{_hex(rng, 12)}"),
                "locator": f"transcript:{rng.randint(1, 59):02d}m{rng.randint(0, 59):02d}s",
                "excerpt_redacted": "Customer cited a competing offer at [REDACTED] off list.",
            }
        )
    return _Case(
        title=f"Discount approval: {name} ({pct}%)",
        subject=f"the {pct}% discount for {name}",
        primary=account,
        primary_facts=[
            _fact("industry", "string", industry, None),
            _fact("segment", "string", segment, None),
            _fact("account_name", "string", name, None),
        ],
        context={"region": ctx.region, "segment": segment},
        related=[(opp, [_fact("stage", "string", rng.choice(("proposal", "negotiation")), None)])],
        inputs=inputs,
        checks=checks,
        exception_reason=rng.choice(reasons),
        evidence=evidence,
        approvers=(
            ("person", "deal_desk_lead_01"),
            ("person", "deal_desk_lead_02"),
            ("person", "vp_finance_01"),
            ("person", "cro_office_01"),
        ),
        action=_Action(
            "apply_discount",
            opp,
            "salesforce",
            [
                _change("discount_pct", _value("decimal", "0.0"), _value("decimal", f"{pct}.0")),
                _change(
                    "approval_status", _value("string", "pending"), _value("string", "approved")
                ),
            ],
            f"{opp['entity_id']}:discount:{pct}pct",
            "salesforce update failed: UNABLE_TO_LOCK_ROW",
        ),
        precedent_reasons=(
            "Same account received a comparable discount exception.",
            f"Comparable {industry_words} deal approved above cap.",
            "Similar deal size and requested discount.",
        ),
    )


# ---------------------------------------------------------------------------
# Workflow 2: refunds.
# ---------------------------------------------------------------------------

_REFUND_REASONS: Final = (
    "damaged_item", "late_delivery", "not_as_described", "duplicate_charge", "changed_mind",
)  # fmt: skip
_PRIOR_REFUNDS: Final = (0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4)


def _refund_case(ctx: _Ctx) -> _Case:
    rng = ctx.rng
    idx = ctx.pick()
    customer = _entity("customer", f"stripe:cus:{idx:06d}", "stripe")
    tier = _trait(("standard", "plus", "premier"), idx, ctx.salt, 3)
    since = _trait(("2019", "2020", "2021", "2022", "2023", "2024"), idx, ctx.salt, 4)
    order = _entity("order", f"shop:order:{_hex(rng, 9)}", "shopify")
    cents = rng.randint(500, 120000)
    days = rng.randint(0, 75)
    prior = rng.choice(_PRIOR_REFUNDS)
    reason = rng.choice(_REFUND_REASONS)
    ticket = f"zd:ticket:{rng.randint(100000, 999999)}"
    order_input = f"input:shopify.order:{ctx.trace_id}"
    ticket_input = f"input:zendesk.ticket:{ctx.trace_id}"
    history_input = f"input:stripe.refund_history:{ctx.trace_id}"
    inputs = [
        _Input(
            "shopify.order",
            _source_obj("shopify", "order", order["entity_id"]),
            [
                _fact("order_total", "decimal", _money(cents), ctx.ago(rng.randint(60, 9000))),
                _fact("days_since_purchase", "int", str(days), None),
                _fact(
                    "fulfillment_status", "string", rng.choice(("delivered", "in_transit")), None
                ),
            ],
        ),
        _Input(
            "zendesk.ticket",
            _source_obj("zendesk", "ticket", ticket),
            [_fact("refund_reason", "string", reason, ctx.ago(rng.randint(1, 120)))],
        ),
        _Input(
            "stripe.refund_history",
            _source_obj("stripe", "customer", customer["entity_id"]),
            [_fact("refunds_last_90d", "int", str(prior), ctx.ago(rng.randint(1, 30)))],
        ),
    ]
    if rng.random() < 0.5:
        del inputs[1]  # self-service refunds come without a support ticket
    screen = (
        _Check(
            _policy("refund_fraud_screen", "1.3"),
            [history_input],
            "deny",
            f"{prior} refunds in the last 90 days; automatic refunds suspended.",
            [
                _violation(
                    "REPEAT_REFUNDS",
                    "Too many refunds in the review window.",
                    {"limit": "2", "observed": str(prior)},
                )
            ],
        )
        if prior >= 3
        else _Check(
            _policy("refund_fraud_screen", "1.3"),
            [history_input],
            "allow",
            "Refund history is normal.",
        )
    )
    violations: list[JSON] = []
    if days > 30:
        violations.append(
            _violation("OUTSIDE_WINDOW", "Refund requested after 30 days.", {"days": str(days)})
        )
    if cents > 50000:
        violations.append(
            _violation(
                "AMOUNT_OVER_LIMIT",
                "Refund above the agent limit.",
                {"limit": "500.00", "amount": _money(cents)},
            )
        )
    window = _Check(
        _policy("refund_window", "2.0"),
        [order_input, ticket_input],
        "require_exception" if violations else "allow",
        "Manual approval needed." if violations else "Within window and agent limit.",
        violations,
    )
    return _Case(
        title=f"Refund {_money(cents)} USD for {order['entity_id']}",
        subject=f"the {_money(cents)} USD refund",
        primary=customer,
        primary_facts=[
            _fact("loyalty_tier", "string", tier, None),
            _fact("customer_since", "date", f"{since}-{idx % 12 + 1:02d}-15", None),
        ],
        context={"region": ctx.region, "channel": rng.choice(("web", "mobile", "phone"))},
        related=[(order, [_fact("order_total", "decimal", _money(cents), None)])]
        if rng.random() < 0.4
        else [],
        inputs=inputs,
        # a clean refund history often skips the fraud screen entirely
        checks=[window] if prior == 0 and rng.random() < 0.5 else [screen, window],
        exception_reason=f"Customer reports {reason.replace('_', ' ')}; {tier} tier goodwill.",
        evidence=[],
        approvers=(
            ("person", "support_manager_01"),
            ("person", "support_manager_02"),
            ("person", "finance_ops_01"),
        ),
        action=_Action(
            "issue_refund",
            order,
            "stripe",
            [
                _change("refund.amount", None, _value("decimal", _money(cents))),
                _change(
                    "order.financial_status", _value("string", "paid"), _value("string", "refunded")
                ),
            ],
            f"stripe:re:{_hex(rng, 16)}",
            "payment processor timed out after 30 seconds",
        ),
        precedent_reasons=(
            "Same customer was refunded outside the window before.",
            f"Similar {reason.replace('_', ' ')} refund approved recently.",
        ),
    )


# ---------------------------------------------------------------------------
# Workflow 3: access requests.
# ---------------------------------------------------------------------------

_DEPARTMENTS: Final = ("engineering", "finance", "sales", "support", "marketing", "legal")
# (resource, system, sensitivity)
_RESOURCES: Final = (
    ("prod_postgres", "aws_iam", "high"),
    ("billing_dashboard", "okta", "medium"),
    ("ci_runners", "github", "low"),
    ("data_warehouse", "snowflake", "high"),
    ("payroll_system", "workday", "high"),
    ("support_console", "zendesk", "low"),
    ("analytics_notebooks", "databricks", "medium"),
    ("crm_reports", "salesforce", "low"),
)
_ROLES: Final = ("read_only", "read_only", "developer", "developer", "maintainer", "admin")


def _access_case(ctx: _Ctx) -> _Case:
    rng = ctx.rng
    idx = ctx.pick()
    user = _entity("user", f"okta:user:{idx:06d}", "okta")
    department = _trait(_DEPARTMENTS, idx, ctx.salt, 5)
    employment = _trait(("employee", "employee", "employee", "contractor"), idx, ctx.salt, 6)
    resource, system, sensitivity = rng.choice(_RESOURCES)
    role = rng.choice(_ROLES)
    duration = rng.choice((7, 30, 90, 365))
    request_id = f"snow:ritm:{rng.randint(1000000, 9999999)}"
    res_entity = _entity("resource", f"res:{resource}", system)
    profile_input = f"input:workday.profile:{ctx.trace_id}"
    form_input = f"input:servicenow.request:{ctx.trace_id}"
    inputs = [
        _Input(
            "workday.profile",
            _source_obj("workday", "worker", f"wd:worker:{idx:06d}"),
            [
                _fact("department", "string", department, ctx.ago(rng.randint(60, 20000))),
                _fact("employment_type", "string", employment, None),
                _fact("tenure_days", "int", str(rng.randint(3, 3000)), None),
            ],
        ),
        _Input(
            "servicenow.request",
            _source_obj("servicenow", "request_item", request_id),
            [
                _fact("resource", "string", resource, None),
                _fact("role", "string", role, None),
                _fact("duration_days", "int", str(duration), None),
            ],
        ),
    ]
    privileged = role in ("maintainer", "admin")
    if employment == "contractor" and role == "admin" and sensitivity == "high":
        decision, summary = "deny", "Contractors may not hold admin on high-sensitivity systems."
        violations = [
            _violation(
                "CONTRACTOR_PRIVILEGED",
                "Privileged access is employee-only.",
                {"resource": resource, "role": role},
            )
        ]
    elif privileged or sensitivity == "high" or duration > 90:
        decision, summary = "require_exception", f"{role} on {resource} needs owner approval."
        violations = [
            _violation(
                "PRIVILEGE_ABOVE_BASELINE",
                "Requested access exceeds the department baseline.",
                {"department": department, "role": role, "sensitivity": sensitivity},
            )
        ]
    else:
        decision, summary, violations = "allow", "Matches the department baseline.", []
    checks = [
        _Check(
            _policy("least_privilege", "1.4"),
            [profile_input, form_input],
            decision,
            summary,
            violations,
        )
    ]
    if resource in ("payroll_system", "billing_dashboard"):
        sod_conflict = department == "finance" and role in ("maintainer", "admin")
        checks.append(
            _Check(
                _policy("segregation_of_duties", "2.0"),
                [profile_input, form_input],
                "require_exception" if sod_conflict else "allow",
                "Finance admin conflicts with payment approval duty."
                if sod_conflict
                else "No conflict.",
                [_violation("SOD_CONFLICT", "Conflicting duties.", {"duty": "payment_approval"})]
                if sod_conflict
                else [],
            )
        )
    group = f"{resource}_{role}"
    return _Case(
        title=f"Access request: {role} on {resource}",
        subject=f"{role} access to {resource}",
        primary=user,
        primary_facts=[
            _fact("department", "string", department, None),
            _fact("employment_type", "string", employment, None),
        ],
        context={"region": ctx.region, "ticket": request_id},
        related=[(res_entity, [_fact("sensitivity", "string", sensitivity, None)])]
        if rng.random() < 0.5
        else [],
        inputs=inputs,
        checks=checks,
        exception_reason=rng.choice(
            (
                "On-call rotation requires temporary elevated access.",
                "Incident follow-up needs direct data access.",
                "Quarter-end close requires reporting access.",
                "Migration project owner for this system.",
            )
        ),
        evidence=[],
        approvers=(
            ("person", "security_officer_01"),
            ("person", "it_manager_02"),
            ("person", f"{resource}_owner"),
        ),
        action=_Action(
            "grant_access",
            user,
            system,
            [
                _change("groups", _value("json", "[]"), _value("json", json.dumps([group]))),
                _change("access.duration_days", None, _value("int", str(duration))),
            ],
            f"{system}:grant:{_hex(rng, 12)}",
            f"{system} provisioning API rate limited (HTTP 429)",
        ),
        precedent_reasons=(
            "Same user was granted this access before.",
            f"Similar {role} grant on {resource} approved.",
        ),
    )


# ---------------------------------------------------------------------------
# Workflow 4: production releases.
# ---------------------------------------------------------------------------

_SERVICES: Final = (
    "payments_api", "checkout_web", "search_indexer", "ledger_service", "notification_worker",
    "auth_gateway", "inventory_api", "pricing_engine", "shipping_router", "profile_service",
    "reporting_jobs", "feature_flags",
)  # fmt: skip
_TEAMS: Final = ("team_payments", "team_platform", "team_growth", "team_core", "team_data")


def _release_case(ctx: _Ctx) -> _Case:
    rng = ctx.rng
    idx = ctx.pick()
    base = _SERVICES[(idx + ctx.salt) % len(_SERVICES)]
    name = base if idx < len(_SERVICES) else f"{base}_{idx // len(_SERVICES)}"
    service = _entity("service", f"svc:{name}", "backstage")
    tier = _trait(("tier_1", "tier_2", "tier_3"), idx, ctx.salt, 7)
    team = _trait(_TEAMS, idx, ctx.salt, 8)
    major, minor, patch = rng.randint(1, 9), rng.randint(0, 40), rng.randint(0, 20)
    old_version = f"v{major}.{minor}.{patch}"
    new_version = (
        f"v{major}.{minor}.{patch + 1}" if rng.random() < 0.6 else f"v{major}.{minor + 1}.0"
    )
    release = _entity("release", f"rel:{name}:{new_version}", "github")
    tests_ok = rng.random() >= 0.08
    freeze = rng.random() < 0.2
    budget = rng.randint(0, 100)
    ci_input = f"input:ci.pipeline:{ctx.trace_id}"
    slo_input = f"input:slo.error_budget:{ctx.trace_id}"
    cal_input = f"input:change_calendar:{ctx.trace_id}"
    inputs = [
        _Input(
            "ci.pipeline",
            _source_obj("github_actions", "workflow_run", f"gha:run:{rng.randint(10**8, 10**9)}"),
            [
                _fact(
                    "tests_passed",
                    "bool",
                    "true" if tests_ok else "false",
                    ctx.ago(rng.randint(2, 60)),
                ),
                _fact("failed_tests", "int", "0" if tests_ok else str(rng.randint(1, 12)), None),
                _fact(
                    "coverage_pct", "decimal", f"{rng.randint(55, 95)}.{rng.randint(0, 9)}", None
                ),
                _fact("commit", "string", _hex(rng, 40), None),
            ],
        ),
        _Input(
            "slo.error_budget",
            _source_obj("datadog", "slo", f"dd:slo:{name}"),
            [
                _fact(
                    "error_budget_remaining_pct",
                    "decimal",
                    f"{budget}.0",
                    ctx.ago(rng.randint(1, 15)),
                )
            ],
        ),
        _Input(
            "change_calendar",
            _source_obj(
                "change_calendar", "window", f"cal:{ctx.stamp(ctx.start)[:10].replace('-', '_')}"
            ),
            [_fact("freeze_active", "bool", "true" if freeze else "false", None)],
        ),
    ]
    gates = _Check(
        _policy("deploy_gates", "5.0"),
        [ci_input],
        "allow" if tests_ok else "deny",
        "All required checks passed." if tests_ok else "Required test suite failed.",
        [] if tests_ok else [_violation("TESTS_FAILED", "CI must be green.", {"pipeline": "main"})],
    )
    risky = freeze or budget < 10
    violations = []
    if freeze:
        violations.append(
            _violation("CHANGE_FREEZE", "A change freeze is active.", {"window": "freeze"})
        )
    if budget < 10:
        violations.append(
            _violation(
                "ERROR_BUDGET_LOW", "Error budget nearly exhausted.", {"remaining": f"{budget}%"}
            )
        )
    window = _Check(
        _policy("change_management", "2026.1"),
        [slo_input, cal_input],
        "require_exception" if risky else "allow",
        "Change needs CAB approval." if risky else "Standard change.",
        violations,
    )
    return _Case(
        title=f"Release {name} {new_version} to production",
        subject=f"the {name} {new_version} rollout",
        primary=service,
        primary_facts=[
            _fact("tier", "string", tier, None),
            _fact("owner_team", "string", team, None),
        ],
        context={"region": ctx.region, "environment": "production"},
        related=[(release, [_fact("previous_version", "string", old_version, None)])]
        if rng.random() < 0.5
        else [],
        inputs=inputs,
        checks=[gates, window] if rng.random() < 0.7 else [window, gates],
        exception_reason=rng.choice(
            (
                "Hotfix for a customer-facing incident.",
                "Security patch; cannot wait for the freeze to end.",
                "Regulatory deadline requires this change.",
            )
        ),
        evidence=[
            {
                "source": _source_obj("pagerduty", "incident", f"pd:inc:{_hex(rng, 8)}"),
                "locator": "timeline",
                "excerpt_redacted": "Customer impact ongoing; fix verified in staging.",
            }
        ]
        if rng.random() < 0.5
        else [],
        approvers=(
            ("role", "change_advisory_board"),
            ("person", "sre_lead_01"),
            ("person", "eng_director_02"),
        ),
        action=_Action(
            "deploy",
            service,
            "kubernetes",
            [
                _change("image.tag", _value("string", old_version), _value("string", new_version)),
                _change("replicas", _value("int", "6"), _value("int", str(rng.choice((6, 8, 12))))),
            ],
            f"argo:rollout:{name}:{new_version}",
            "canary analysis failed: p99 latency above threshold; rolled back",
        ),
        precedent_reasons=(
            "Same service shipped during a freeze with CAB approval.",
            "Comparable hotfix release approved under low error budget.",
        ),
    )


#: The workflows, with relative weights in the generated mix.
WORKFLOWS: Final = (
    Workflow(
        "discount_approval", "dealdesk_agent", "pricing", "dealdesk_agent_v2", 30, _discount_case
    ),
    Workflow("refund_request", "refund_agent", "billing", "refund_agent_v1", 30, _refund_case),
    Workflow("access_request", "access_agent", "iam", "access_agent_v3", 25, _access_case),
    Workflow(
        "production_release", "release_agent", "deploy", "release_agent_v1", 15, _release_case
    ),
)


# ---------------------------------------------------------------------------
# The driver: case -> event envelopes.
# ---------------------------------------------------------------------------


class _Generator:
    """Holds the bounded cross-trace state: RNG, clock and recent finished traces."""

    def __init__(self, traces: int, seed: int, base: datetime) -> None:
        self._rng = Random(seed)
        self._traces = traces
        self._stamp = _Stamper(base)
        self._clock = 0  # seconds after base of the last emitted event
        self._pool = isqrt(traces) + 20
        self._salt = self._rng.getrandbits(32)
        self._total_weight = sum(w.weight for w in WORKFLOWS)
        self._history: dict[str, deque[tuple[str, str]]] = {
            w.name: deque(maxlen=PRECEDENT_HISTORY) for w in WORKFLOWS
        }

    def run(self) -> Iterator[JSON]:
        for _ in range(self._traces):
            yield from self._trace()

    def _choose_workflow(self) -> Workflow:
        point = self._rng.randrange(self._total_weight)
        for workflow in WORKFLOWS:
            if point < workflow.weight:
                return workflow
            point -= workflow.weight
        raise AssertionError("unreachable")  # pragma: no cover

    def _trace(self) -> list[JSON]:
        rng = self._rng
        workflow = self._choose_workflow()
        trace_id = _uuid(rng)
        region = rng.choice(_REGIONS)
        gap = rng.randint(1, 20)
        ctx = _Ctx(rng, self._pool, self._salt, trace_id, self._clock + gap, self._stamp, region)
        case = workflow.build(ctx)
        correlation_id = trace_id if rng.random() < 0.75 else None
        trace = _TraceWriter(self, workflow, trace_id, correlation_id, region)

        payload: JSON = {
            "workflow": workflow.name,
            "title": case.title,
            "primary_entity": _clone(case.primary),
        }
        if case.context:
            payload["context"] = case.context
        trace.emit("TraceStarted", payload, gap)

        observations: list[tuple[str, JSON]] = [
            ("EntityObserved", {"entity": e, "role": "related", "facts": f})
            for e, f in case.related
        ]
        observations += [
            (
                "InputObserved",
                {"input_id": f"input:{i.name}:{trace_id}", "source": i.source, "facts": i.facts},
            )
            for i in case.inputs
        ]
        rng.shuffle(observations)
        primary_obs = (
            "EntityObserved",
            {"entity": _clone(case.primary), "role": "primary", "facts": case.primary_facts},
        )
        observations.insert(0 if rng.random() < 0.8 else 1, primary_obs)
        if len(observations) > 2 and rng.random() < 0.5:
            observations.pop()  # not every agent looks at everything
        for event_type, obs in observations:
            trace.emit(event_type, obs, rng.randint(1, 4))

        observed = {p["input_id"] for t, p in observations if t == "InputObserved"}
        for check in case.checks:
            payload = {
                "policy": _clone(check.policy),
                "inputs": [i for i in check.inputs if i in observed] or sorted(observed),
                "decision": check.decision,
            }
            if check.violations:
                payload["violations"] = check.violations
            payload["explanation"] = {"summary": check.summary}
            trace.emit("PolicyEvaluated", payload, rng.randint(1, 3))

        decision = max((c.decision for c in case.checks), key=_SEVERITY.__getitem__)
        history = self._history[workflow.name]
        outcome, summary = self._decide(trace, case, decision, history)
        trace.emit("TraceFinished", {"outcome": outcome, "summary": summary}, rng.randint(1, 5))
        history.append((trace_id, case.primary["entity_id"]))
        return trace.events

    def _decide(
        self, trace: _TraceWriter, case: _Case, decision: str, history: deque[tuple[str, str]]
    ) -> tuple[str, str]:
        """Everything after policy evaluation; returns the trace outcome and summary."""
        rng = self._rng
        if decision == "deny":
            if history and rng.random() < 0.15:
                self._cite(trace, case, history)
            return "failure", f"Denied by policy: {case.subject} was not applied."
        if decision == "require_exception":
            gated = next(c for c in case.checks if c.decision == "require_exception")
            cite = bool(history) and rng.random() < 0.6
            if cite and rng.random() < 0.5:
                self._cite(trace, case, history)
                cite = False
            exception_id = f"exc:{gated.policy['policy_id']}:{trace.trace_id}"
            payload: JSON = {
                "exception_id": exception_id,
                "policy": _clone(gated.policy),
                "reason": case.exception_reason,
            }
            if case.evidence:
                payload["evidence"] = case.evidence
            trace.emit("ExceptionRequested", payload, rng.randint(1, 5))
            if cite:
                self._cite(trace, case, history)
            if rng.random() < 0.05:
                return "abandoned", f"No approval received; {case.subject} was abandoned."
            approver_type, approver_id = rng.choice(case.approvers)
            approver = {"actor_type": approver_type, "actor_id": approver_id}
            approved = rng.random() < 0.8
            approval: JSON = {
                "approval_id": f"appr:{trace.trace_id}",
                "subject": {"subject_type": "exception", "subject_id": exception_id},
                "approver": approver,
                "decision": "approved" if approved else "rejected",
                "reason": "Justification accepted." if approved else "Justification insufficient.",
            }
            trace.emit("ApprovalRecorded", approval, rng.randint(60, 900), actor=dict(approver))
            if not approved:
                return "failure", f"Exception rejected: {case.subject} was not applied."
        elif history and rng.random() < 0.1:
            self._cite(trace, case, history)
        return self._act(trace, case)

    def _act(self, trace: _TraceWriter, case: _Case) -> tuple[str, str]:
        """Propose and commit the action, retrying once on failure half of the time."""
        rng = self._rng
        action = case.action
        for attempt in (1, 2):
            action_id = f"act:{action.action_type}:{trace.trace_id}"
            if attempt > 1:
                action_id += f":retry{attempt - 1}"
            trace.emit(
                "ActionProposed",
                {
                    "action_id": action_id,
                    "action_type": action.action_type,
                    "target_entity": _clone(action.target_entity),
                    "target_system": action.target_system,
                    "changes": _clone(action.changes),
                },
                rng.randint(1, 5),
            )
            if rng.random() < 0.88:
                trace.emit(
                    "ActionCommitted",
                    {
                        "action_id": action_id,
                        "status": "success",
                        "external_reference": action.external_reference,
                    },
                    rng.randint(1, 30),
                )
                suffix = " after a retry" if attempt > 1 else ""
                return "success", f"Applied {case.subject}{suffix}."
            trace.emit(
                "ActionCommitted",
                {"action_id": action_id, "status": "failure", "error": action.error},
                rng.randint(1, 30),
            )
            if rng.random() < 0.5:
                break
        return "failure", f"Action failed: {action.error}."

    def _cite(self, trace: _TraceWriter, case: _Case, history: deque[tuple[str, str]]) -> None:
        """Cite an earlier finished trace, preferring one about the same primary entity."""
        rng = self._rng
        entity_id = case.primary["entity_id"]
        same = [tid for tid, eid in history if eid == entity_id]
        if same:
            cited, score, reason = rng.choice(same), rng.randint(85, 99), case.precedent_reasons[0]
        else:
            cited = rng.choice(history)[0]
            score, reason = rng.randint(55, 89), rng.choice(case.precedent_reasons[1:])
        payload = {"cited_trace_id": cited, "reason": reason, "similarity_score": f"0.{score:02d}"}
        trace.emit("PrecedentCited", payload, rng.randint(1, 4))

    def tick(self, delay: int) -> str:
        """Advance the stream clock; ``delay >= 1`` keeps occurred_at strictly increasing."""
        self._clock += delay
        return self._stamp(self._clock)

    def new_id(self) -> str:
        return _uuid(self._rng)


class _TraceWriter:
    """Accumulates one trace's envelopes (a trace is small, so this stays bounded)."""

    def __init__(
        self,
        gen: _Generator,
        workflow: Workflow,
        trace_id: str,
        correlation_id: str | None,
        region: str,
    ) -> None:
        self.gen = gen
        self.workflow = workflow
        self.trace_id = trace_id
        self.correlation_id = correlation_id
        self.tags = ["seed", f"workflow:{workflow.name}", f"region:{region}"]
        self.events: list[JSON] = []

    def emit(
        self, event_type: str, payload: JSON, delay: int, *, actor: JSON | None = None
    ) -> None:
        seq = len(self.events)
        event_id = self.gen.new_id()
        self.events.append(
            {
                "event_id": event_id,
                "trace_id": self.trace_id,
                "trace_seq": seq,
                "event_type": event_type,
                "occurred_at": self.gen.tick(delay),
                "source": {
                    "producer_id": self.workflow.producer_id,
                    "system": SEED_SYSTEM,
                    "subsystem": self.workflow.subsystem,
                },
                "actor": actor or {"actor_type": "agent", "actor_id": self.workflow.agent_id},
                "correlation_id": self.correlation_id,
                "causation_event_id": self.events[-1]["event_id"] if self.events else None,
                "idempotency_key": f"{event_type}:{self.trace_id}:{seq}",
                "schema_version": 1,
                "payload": payload,
                "tags": list(self.tags),
            }
        )


def generate_events(
    traces: int, seed: int = 0, *, base_time: str = "2026-01-01T00:00:00Z"
) -> Iterator[dict[str, Any]]:
    """Yield envelope dicts (JSON-ready, the golden ``events.json`` element format).

    Traces are yielded one after another, each complete (TraceStarted ... TraceFinished)
    and contiguous, so the output can be appended in order by any store. The same
    ``(traces, seed, base_time)`` always yields identical output; ``traces`` also sizes
    the entity pools (``isqrt(traces) + 20`` per workflow), so that entities recur across
    traces and the context graph and precedent search see shared nodes at any scale.
    ``occurred_at`` starts after ``base_time`` (format ``YYYY-MM-DDTHH:MM:SSZ``) and
    increases strictly over the whole stream (a trace spans minutes, approvals wait up
    to 15 minutes, so 1,000,000 traces cover roughly a decade).

    Arguments are validated eagerly (before the first ``next``) so that a bad call fails
    where it is made rather than when the stream is first consumed.
    """
    if isinstance(traces, bool) or not isinstance(traces, int) or traces < 0:
        raise ValueError("traces must be a non-negative integer")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError("seed must be an integer")
    try:
        base = datetime.strptime(base_time, _TIME_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"base_time must look like 2026-01-01T00:00:00Z, got {base_time!r}"
        ) from exc
    return _Generator(traces, seed, base).run()
