"""The HTTP service under load, over loopback.

    .venv/bin/python bench/service_load.py [--db sqlite|postgres] [--clients 4] [--events 20000]
        [--processes N]  # PostgreSQL: N API processes (serve --processes)

1. Ingestion: several concurrent clients POSTing batches of 100 events
   (events/s, and each POST's latency).
2. Read latency under load: trace reads and precedent searches (p50/p99)
   while two writers keep appending.
3. Stream latency: time from an append's response to its arrival on an SSE
   client (p50/p99).
Floor: GET /healthz round trips (the HTTP stack alone).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson
from _data import percentile, scratch_postgres, seeded_envelopes

from decisiongraph.runtime.process import open_runtime_store

ROOT = Path(__file__).resolve().parents[1]


def serve(
    db: str, port: int, processes: int = 1
) -> tuple[subprocess.Popen[bytes], list[subprocess.Popen[bytes]]]:
    extra = []
    server = subprocess.Popen(
        [sys.executable, "-m", "decisiongraph", "serve", "--db", db, "--port", str(port)]
        + (["--processes", str(processes)] if processes > 1 else []),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "DG_RATE_WRITE": "0", "DG_RATE_READ": "0"},
    )
    if db.startswith("postgresql://"):
        extra.append(
            subprocess.Popen(
                [sys.executable, "-m", "decisiongraph", "worker", db],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server, extra
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.1)


def run(db: str, clients: int, events: int, processes: int = 1) -> None:
    store = open_runtime_store(db)
    _, key = store.create_account("bench", ["default"], ["events:write", "events:read"])
    store.close()
    port = 18000 + int(time.time()) % 1000
    server, extra = serve(db, port, processes)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=url) as client:
            started = time.perf_counter()
            for _ in range(200):
                client.get("/healthz")
            floor_ms = (time.perf_counter() - started) / 200 * 1000
        # 1. ingestion, one shard of traces per client
        batches = [
            [e.to_dict() for e in batch[i : i + 100]]
            for batch in seeded_envelopes(events)
            for i in range(0, len(batch), 100)
        ]
        errors: list[int] = []
        post_ms: list[float] = []

        def ingest(bodies: list[bytes]) -> None:
            sent = {**headers, "Content-Type": "application/json"}
            with httpx.Client(base_url=url, headers=sent, timeout=60) as client:
                for body in bodies:
                    t0 = time.perf_counter()
                    response = client.post("/api/v1/events", content=body)
                    post_ms.append((time.perf_counter() - t0) * 1000)
                    if response.status_code != 200:
                        errors.append(response.status_code)

        # Traces span batches; events of one trace must go in order, so shard by trace.
        by_trace: dict[str, list[dict[str, object]]] = {}
        for body in batches:
            for event in body:
                by_trace.setdefault(str(event["trace_id"]), []).append(event)
        traces = list(by_trace.values())
        shards = []
        for index in range(clients):
            flat = [e for trace in traces[index::clients] for e in trace]
            shards.append([flat[i : i + 100] for i in range(0, len(flat), 100)])
        # Bodies are encoded before the clock starts: the load generator shares
        # the machine's two cores with the server and should spend them on
        # sending, not on serializing JSON.
        encoded = [[orjson.dumps({"events": body}) for body in shard] for shard in shards]
        threads = [threading.Thread(target=ingest, args=(bodies,)) for bodies in encoded]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        total = sum(len(b) for shard in shards for b in shard)
        print(
            f"ingestion   {total:,} events, batches of 100, {clients} clients: "
            f"{total / elapsed:,.0f} ev/s  (errors: {len(errors)}; "
            f"POST p50 {percentile(post_ms, 0.5):.0f} ms, p99 {percentile(post_ms, 0.99):.0f} ms)"
        )
        # 2. reads under load
        trace_ids = [str(t[0]["trace_id"]) for t in traces[:50]]
        with httpx.Client(base_url=url, headers=headers) as client:
            deadline = time.monotonic() + 120
            while client.get("/api/v1/projections").json()["projections"][0]["lag_events"]:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            stop = threading.Event()
            more = [e.to_dict() for b in seeded_envelopes(3000, seed=99) for e in b]

            def keep_writing() -> None:
                with httpx.Client(base_url=url, headers=headers, timeout=60) as writer:
                    for i in range(0, len(more), 20):
                        if stop.is_set():
                            return
                        writer.post("/api/v1/events", json={"events": more[i : i + 20]})

            writer = threading.Thread(target=keep_writing)
            writer.start()
            trace_ms, precedent_ms = [], []
            failed = {"trace read": 0, "precedents": 0}
            for i in range(300):
                t0 = time.perf_counter()
                got = client.get(f"/api/v1/traces/{trace_ids[i % len(trace_ids)]}/events")
                trace_ms.append((time.perf_counter() - t0) * 1000)
                failed["trace read"] += got.status_code != 200
                t0 = time.perf_counter()
                got = client.get("/api/v1/precedents", params={"limit": 20})
                precedent_ms.append((time.perf_counter() - t0) * 1000)
                failed["precedents"] += got.status_code != 200
            stop.set()
            writer.join()
        for name, values in (("trace read", trace_ms), ("precedents", precedent_ms)):
            print(
                f"{name:<11} p50 {percentile(values, 0.5):.1f} ms  "
                f"p99 {percentile(values, 0.99):.1f} ms  (floor /healthz {floor_ms:.2f} ms; "
                f"not 200: {failed[name]})"
            )
        # 3. stream latency
        arrivals: dict[int, float] = {}
        opened = threading.Event()

        def listen() -> None:
            with (
                httpx.Client(base_url=url, headers=headers, timeout=None) as client,
                client.stream("GET", "/api/v1/stream") as response,
            ):
                opened.set()
                for line in response.iter_lines():
                    if line.startswith("id: "):
                        arrivals[int(line[4:])] = time.perf_counter()
                        if len(arrivals) >= 200:
                            return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        opened.wait(10)
        sent: dict[int, float] = {}
        extra_events = [e.to_dict() for b in seeded_envelopes(200, seed=123) for e in b]
        with httpx.Client(base_url=url, headers=headers) as client:
            for event in extra_events:
                response = client.post("/api/v1/events", json=event)
                done = time.perf_counter()
                if response.status_code == 200:
                    sent[response.json()["events"][0]["log_seq"]] = done
                time.sleep(0.01)
        listener.join(30)
        lags = [(arrivals[s] - t) * 1000 for s, t in sent.items() if s in arrivals]
        if lags:
            print(
                f"stream      {len(lags)} events  p50 {percentile(lags, 0.5):.1f} ms  "
                f"p99 {percentile(lags, 0.99):.1f} ms"
            )
    finally:
        server.terminate()
        server.wait(30)
        for process in extra:
            process.terminate()
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=1, help="API processes (PostgreSQL)")
    args = parser.parse_args()
    if args.db == "postgres":
        with scratch_postgres() as url:
            run(url, args.clients, args.events, args.processes)
    else:
        with tempfile.TemporaryDirectory() as folder:
            run(str(Path(folder) / "http.db"), args.clients, args.events)


if __name__ == "__main__":
    main()
