"""The hand-encoded ingest response is exactly what its model would write."""

from __future__ import annotations

from dataclasses import replace

from decisiongraph import ActorRef, DecisionGraph, EntityRef, SourceRef
from decisiongraph.service.models import AppendedEvent, AppendResponse


def test_append_response_encoding_matches_the_model() -> None:
    with DecisionGraph(":memory:") as dg:
        trace = dg.start_trace(
            "wörkflow",
            "Tïtle 😀",
            EntityRef("account", "a-1"),
            SourceRef("agent", "bots"),
            ActorRef("agent", "bot"),
        )
        stored = dg.get_trace_events(trace)
    events = [stored[0], replace(stored[0], repeated=True)]
    model = AppendResponse(
        events=[
            AppendedEvent(
                tenant_id=event.tenant_id,
                log_seq=event.log_seq,
                trace_id=event.trace_id,
                trace_seq=event.trace_seq,
                event_id=event.event_id,
                event_type=event.event_type,
                occurred_at=event.occurred_at,
                recorded_at=event.recorded_at,
                payload_hash=event.payload_hash,
                chain_hash=event.chain_hash,
                repeated=event.repeated,
            )
            for event in events
        ]
    )
    assert AppendResponse.encode(events) == model.model_dump_json().encode("utf-8")
    assert AppendResponse.model_validate_json(AppendResponse.encode(events)) == model
    assert AppendResponse.encode([]) == b'{"events":[]}'
