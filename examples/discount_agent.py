"""A small discount-approval agent that records its decisions in DecisionGraph.

    python examples/discount_agent.py                    # embedded, in memory
    python examples/discount_agent.py decisions.db       # embedded SQLite file
    python examples/discount_agent.py http://127.0.0.1:8080 --api-key dgk_...

No model and no network is needed for the decisions themselves: a discount
policy allows up to 10%, larger discounts need an exception that a (simulated)
sales director approves up to 25%. Afterwards the agent looks up precedents
for a new case before deciding it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from decisiongraph import (
    ActorRef,
    ApprovalSubject,
    DecisionGraphAPI,
    EntityRef,
    Fact,
    PolicyRef,
    SourceRef,
    Value,
    connect,
)

AGENT = SourceRef(producer_id="discount_agent", system="crm")
BOT = ActorRef(actor_type="agent", actor_id="pricing_bot")
DIRECTOR = ActorRef(actor_type="person", actor_id="sales_director")
POLICY = PolicyRef(policy_id="discount_cap", policy_version="3")


@dataclass(frozen=True)
class Deal:
    deal_id: str
    account: str
    discount_pct: int


def decide(dg: DecisionGraphAPI, deal: Deal) -> str:
    """One decision, recorded as one trace; returns the outcome."""
    account = EntityRef("account", deal.account, "crm")
    with dg.trace(
        "discount_approval", f"{deal.discount_pct}% for {deal.deal_id}", account, AGENT, BOT
    ) as t:
        t.observe_entity(account, "primary", [Fact("tier", Value("string", "enterprise"))])
        if deal.discount_pct <= 10:
            t.evaluate_policy(POLICY, ["discount_pct"], "allow")
            approved = True
        else:
            t.evaluate_policy(POLICY, ["discount_pct"], "require_exception")
            exception_id = f"exc_{deal.deal_id}"
            t.request_exception(exception_id, POLICY, "strategic account")
            approved = deal.discount_pct <= 25
            t.record_approval(
                f"apr_{deal.deal_id}",
                ApprovalSubject("exception", exception_id),
                DIRECTOR,
                "approved" if approved else "rejected",
            )
        if approved:
            t.propose_action(
                f"act_{deal.deal_id}",
                "apply_discount",
                EntityRef("deal", deal.deal_id, "crm"),
                "crm",
                [],
            )
            t.commit_action(f"act_{deal.deal_id}", "success")
        t.outcome = "success" if approved else "failure"
    return t.outcome


def precedent_titles(dg: DecisionGraphAPI, account: str) -> list[str]:
    """Earlier decisions under the discount policy for ``account``, newest first."""
    # Read your writes: remote projections may still be catching up.
    dg.wait_for(dg.get_projection_health().event_log_last_seq)
    hits = dg.find_precedents(policy_id=POLICY.policy_id, entity_type="account", entity_id=account)
    return [hit.title for hit in hits]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", nargs="?", default=":memory:")
    parser.add_argument("--api-key")
    args = parser.parse_args()
    options = {"api_key": args.api_key} if args.api_key else {}
    dg = connect(args.target, **options)
    deals = [Deal("d1", "acme", 8), Deal("d2", "acme", 18), Deal("d3", "globex", 40)]
    for deal in deals:
        print(f"{deal.deal_id}: {deal.discount_pct}% -> {decide(dg, deal)}")
    print(f"precedents for acme under discount_cap: {precedent_titles(dg, 'acme')}")
    dg.close()


if __name__ == "__main__":
    main()
