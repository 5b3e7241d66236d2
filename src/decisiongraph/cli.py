"""The ``decisiongraph`` command.

DB is a SQLite path or a ``postgresql://`` URL everywhere. Domain errors are
printed as ``Error: <CODE>: <message>`` and exit 1; output on unchanged data
is byte-stable, so scripts can diff it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO

import typer

from decisiongraph.core.envelope import DEFAULT_TENANT, EventEnvelope, envelope_from_dict
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.projections.rows import PROJECTION_NAMES
from decisiongraph.runtime.health import projection_statuses
from decisiongraph.runtime.rebuild import compare_with_rebuild, rebuild_online, replay_digests
from decisiongraph.runtime.supervisor import SupervisorConfig, default_owner
from decisiongraph.store.postgres import PostgresEventStore, is_postgres_url
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sqlite import SQLiteEventStore

app = typer.Typer(
    help="DecisionGraph: an append-only, tamper-evident log of decisions.",
    no_args_is_help=True,
    add_completion=False,
)
dead_letters_app = typer.Typer(help="Events a projection could not apply.", no_args_is_help=True)
app.add_typer(dead_letters_app, name="dead-letters")
accounts_app = typer.Typer(help="Service accounts and their API keys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")

Db = Annotated[str, typer.Argument(help="SQLite file path or postgresql:// URL")]
Tenant = Annotated[str, typer.Option("--tenant", help="Tenant id")]
IMPORT_CHUNK = 1000


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _open(db: str, *, must_exist: bool = True) -> SqlEventStore:
    """Open a store; a missing SQLite file is an error unless we create it."""
    if is_postgres_url(db):
        return PostgresEventStore(db)
    path = Path(db)
    if path.is_symlink():
        typer.echo(f"Warning: '{db}' is a symlink to '{path.resolve()}'", err=True)
    if must_exist and not path.exists():
        _fail(f"Error: Database file '{db}' not found")
    if path.exists() and not path.is_file():
        _fail(f"Error: '{db}' is not a file")
    return SQLiteEventStore(path)


def _dump(value: Any, *, ascii_only: bool = True) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=ascii_only)


# -- reading event files -----------------------------------------------------
def _documents(text: str) -> Iterator[tuple[str, Any]]:
    """(position, decoded envelope) for each event in a file's text.

    Golden format (an object with ``events``), a JSON array, or JSON Lines.
    """
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # perhaps JSON Lines whose first line is an object
        if isinstance(whole, dict) and isinstance(whole.get("events"), list):
            for index, item in enumerate(whole["events"]):
                yield f"event {index}", item
            return
        if isinstance(whole, list):
            for index, item in enumerate(whole):
                yield f"event {index}", item
            return
        if isinstance(whole, dict):
            yield "line 1", whole
            return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            yield f"line {number}", exc


def _read_envelopes(path: str) -> list[EventEnvelope]:
    """Parse and check every event; report all problems, store nothing."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"Error: cannot read '{path}': {exc}")
    envelopes: list[EventEnvelope] = []
    problems: list[str] = []
    for position, item in _documents(text):
        if isinstance(item, json.JSONDecodeError):
            problems.append(f"{position}: DG_ERR_INVALID_ARGUMENT: malformed JSON: {item.msg}")
            continue
        try:
            envelopes.append(envelope_from_dict(item))
        except DecisionGraphError as exc:
            problems.append(f"{position}: {exc}")
    if problems:
        for problem in problems:
            typer.echo(f"Error: {problem}", err=True)
        _fail(f"Error: {len(problems)} invalid event(s) in '{path}'; nothing was imported")
    return envelopes


def _output(file: str) -> AbstractContextManager[TextIO]:
    """The file to write, or stdout (left open) for '-'."""
    if file == "-":
        return nullcontext(sys.stdout)
    return open(file, "w", encoding="utf-8")


# -- commands ------------------------------------------------------------------
@app.command("import")
def import_events(db: Db, file: str, tenant: Tenant = DEFAULT_TENANT) -> None:
    """Append the events of FILE exactly as given, all or nothing."""
    envelopes = _read_envelopes(file)
    store = _open(db, must_exist=False)
    try:
        stored = store.append(tenant, envelopes, project=True)
    except DecisionGraphError as exc:
        index = exc.details.get("index")
        where = f" (event {index})" if index is not None else ""
        _fail(f"Error{where}: {exc}; nothing was imported")
    finally:
        store.close()
    repeats = sum(1 for event in stored if event.repeated)
    last = max((event.log_seq for event in stored), default=0)
    typer.echo(
        f"Imported {len(stored) - repeats} event(s), {repeats} idempotent repeat(s); "
        f"last log_seq {last}"
    )


@app.command("export")
def export_events(db: Db, file: str, tenant: Tenant = DEFAULT_TENANT) -> None:
    """Write the tenant's log as JSON Lines (FILE may be '-' for stdout)."""
    store = _open(db)
    count = 0
    try:
        with _output(file) as out:
            for batch in store.iter_event_batches(tenant, batch_size=IMPORT_CHUNK):
                for event in batch:
                    line = json.dumps(event.to_dict(), sort_keys=True, ensure_ascii=False)
                    out.write(line + "\n")
                    count += 1
    finally:
        store.close()
    if file != "-":
        typer.echo(f"Exported {count} event(s) to {file}")


@app.command("replay")
def replay(
    db: Db,
    tenant: Tenant = DEFAULT_TENANT,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
    to: Annotated[int | None, typer.Option("--to", help="Replay up to this log_seq")] = None,
) -> None:
    """Rebuild the projections from the log on a private replica; print digests.

    The database itself is only read.
    """
    store = _open(db)
    try:
        digests = replay_digests(store, tenant, to).as_dict()
    except DecisionGraphError as exc:
        _fail(f"Error replaying projections: {exc}")
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(digests))
        return
    typer.echo("Projection digests after replay:")
    for name in sorted(digests):
        typer.echo(f"  {name}: {digests[name]}")


@app.command("projection-status")
def projection_status(
    db: Db,
    tenant: Tenant = DEFAULT_TENANT,
    include_digests: Annotated[bool, typer.Option("--include-digests")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Per projection: cursor, head, lag, status, owner, last error."""
    store = _open(db)
    try:
        statuses = projection_statuses(store, tenant)
        stats = store.log_stats(tenant)
        digests = store.digests(tenant).as_dict() if include_digests else None
    finally:
        store.close()
    if as_json:
        typer.echo(
            _dump(
                {
                    "tenant": tenant,
                    "event_count": stats.event_count,
                    "trace_count": stats.trace_count,
                    "event_log_last_seq": stats.last_log_seq,
                    "projections": [status.as_dict() for status in statuses],
                    "digests": digests,
                }
            )
        )
        return
    typer.echo(
        f"tenant {tenant}: {stats.event_count} events, {stats.trace_count} traces, "
        f"head {stats.last_log_seq}"
    )
    header = f"{'projection':<18} {'status':<12} {'cursor':>9} {'lag':>7} {'lag_s':>8}  owner"
    typer.echo(header)
    for status in statuses:
        typer.echo(
            f"{status.projection:<18} {status.status:<12} {status.cursor:>9} "
            f"{status.lag_events:>7} {status.lag_seconds:>8.1f}  {status.owner or '-'}"
        )
        if status.rebuild_position is not None:
            typer.echo(f"{'':<18} rebuilding: shadow at {status.rebuild_position} of {status.head}")
        if status.last_error:
            typer.echo(f"{'':<18} last error: {status.last_error}")
    if digests is not None:
        for name in sorted(digests):
            typer.echo(f"  {name}: {digests[name]}")


@app.command("dump-trace")
def dump_trace(
    db: Db,
    trace_id: str,
    tenant: Tenant = DEFAULT_TENANT,
    include_payload: Annotated[bool, typer.Option("--include-payload")] = False,
) -> None:
    """The trace's events in trace_seq order, as JSON."""
    store = _open(db)
    try:
        events = store.get_trace_events(tenant, trace_id)
    finally:
        store.close()
    if not events:
        _fail(f"Error getting trace events: DG_ERR_NOT_FOUND: Trace '{trace_id}' has no events")
    rows = []
    for event in events:
        row: dict[str, Any] = {
            "log_seq": event.log_seq,
            "event_id": event.event_id,
            "trace_id": event.trace_id,
            "trace_seq": event.trace_seq,
            "event_type": event.event_type,
            "occurred_at": event.occurred_at,
            "recorded_at": event.recorded_at,
        }
        if include_payload:
            row.update(
                source=event.source.to_dict(),
                actor=event.actor.to_dict(),
                correlation_id=event.correlation_id,
                causation_event_id=event.causation_event_id,
                idempotency_key=event.idempotency_key,
                schema_version=event.schema_version,
                payload=event.payload,
                payload_hash=event.payload_hash,
                tags=list(event.tags),
            )
        rows.append(row)
    typer.echo(_dump(rows))


@app.command("verify")
def verify(db: Db, tenant: Annotated[str | None, typer.Option("--tenant")] = None) -> None:
    """Recompute every tenant's hash chain and payload hashes.

    Exits 2 naming the first bad log_seq when a row was edited, deleted or
    moved behind the store's back. Record the printed head hashes elsewhere:
    they pin the log as of now.
    """
    store = _open(db)
    bad = False
    try:
        tenants = [tenant] if tenant else store.tenants()
        for name in tenants:
            problem = store.verify_chain(name)
            if problem is None:
                stats = store.log_stats(name)
                chain = store.list_events(name, since_log_seq=stats.last_log_seq - 1, limit=1)
                head_hash = chain[0].chain_hash if chain else "-"
                typer.echo(f"tenant {name}: OK, {stats.event_count} events, head {head_hash}")
            else:
                bad = True
                typer.echo(
                    f"tenant {name}: TAMPERED at log_seq {problem.log_seq}: {problem.reason}"
                )
    finally:
        store.close()
    if bad:
        raise typer.Exit(2)


@app.command("seed")
def seed(
    db: Db,
    traces: Annotated[int, typer.Option("--traces", min=1)],
    seed_value: Annotated[int, typer.Option("--seed")] = 0,
    tenant: Tenant = DEFAULT_TENANT,
) -> None:
    """Append N deterministic, realistic decision traces (same seed, same digests)."""
    from decisiongraph.seed import generate_events

    store = _open(db, must_exist=False)
    written = 0
    batch: list[EventEnvelope] = []
    try:
        for raw in generate_events(traces, seed_value):
            batch.append(envelope_from_dict(raw))
            if len(batch) >= IMPORT_CHUNK:
                written += len(store.append(tenant, batch, project=True))
                batch = []
        if batch:
            written += len(store.append(tenant, batch, project=True))
        store.project_pending(tenant)
        digests = store.digests(tenant).as_dict()
    except DecisionGraphError as exc:
        _fail(f"Error: {exc}")
    finally:
        store.close()
    typer.echo(f"Seeded {traces} traces ({written} events) into tenant {tenant}")
    for name in sorted(digests):
        typer.echo(f"  {name}: {digests[name]}")


@app.command("worker")
def worker(
    db: Db,
    tenant: Annotated[list[str] | None, typer.Option("--tenant", help="Only these tenants")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 1000,
    poll_interval: Annotated[float, typer.Option("--poll-interval")] = 0.5,
    lease_ttl: Annotated[float, typer.Option("--lease-ttl")] = 10.0,
) -> None:
    """Run projection workers until SIGTERM (drains the in-flight batch)."""
    import logging

    from decisiongraph.runtime.process import run_worker_process

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not is_postgres_url(db) and not Path(db).exists():
        _fail(f"Error: Database file '{db}' not found")
    config = SupervisorConfig(
        tenants=tenant or None,
        batch_size=batch_size,
        poll_interval=poll_interval,
        lease_ttl=lease_ttl,
    )
    run_worker_process(db, config)


@app.command("rebuild")
def rebuild(
    db: Db,
    projection: Annotated[str, typer.Option("--projection", help="One of the projections")],
    tenant: Tenant = DEFAULT_TENANT,
    reason: Annotated[str, typer.Option("--reason")] = "",
) -> None:
    """Rebuild a projection online (shadow tables, then an atomic swap)."""
    if projection not in PROJECTION_NAMES:
        _fail(f"Error: unknown projection '{projection}' ({', '.join(PROJECTION_NAMES)})")
    if not reason.strip():
        _fail("Error: DG_ERR_INVALID_ARGUMENT: --reason is required")
    store = _open(db)
    owner = default_owner()
    try:
        store.record_audit(
            tenant, actor=owner, action="projection.rebuild", target=projection, reason=reason
        )
        cursor = rebuild_online(store, tenant, projection, owner=owner)
    except DecisionGraphError as exc:
        _fail(f"Error: {exc}")
    finally:
        store.close()
    typer.echo(f"Rebuilt {projection} of tenant {tenant}; live at log_seq {cursor}")


@app.command("compare")
def compare(db: Db, tenant: Tenant = DEFAULT_TENANT) -> None:
    """Live projection digests against a fresh rebuild: 'match' or the first difference."""
    store = _open(db)
    try:
        result = compare_with_rebuild(store, tenant)
    except DecisionGraphError as exc:
        _fail(f"Error: {exc}")
    finally:
        store.close()
    if result.match:
        typer.echo("match")
        return
    typer.echo(f"MISMATCH in {result.first_difference}")
    raise typer.Exit(3)


@dead_letters_app.command("list")
def dead_letters_list(
    db: Db,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    status: Annotated[str | None, typer.Option("--status")] = None,
) -> None:
    """Dead letters as JSON (all tenants unless --tenant)."""
    store = _open(db)
    try:
        letters = store.dead_letters(tenant, status=status)
    finally:
        store.close()
    typer.echo(_dump([letter.as_dict() for letter in letters]))


def _resolve(db: str, tenant: str, letter_id: int, action: str, reason: str, actor: str) -> None:
    store = _open(db)
    try:
        letter = store.resolve_dead_letter(
            tenant, letter_id, action=action, actor=actor, reason=reason
        )
    except DecisionGraphError as exc:
        _fail(f"Error: {exc}")
    finally:
        store.close()
    typer.echo(
        f"Dead letter {letter.id} ({letter.projection_name}@{letter.log_seq}): {letter.status}"
    )


@dead_letters_app.command("retry")
def dead_letters_retry(
    db: Db,
    letter_id: int,
    reason: Annotated[str, typer.Option("--reason")],
    tenant: Tenant = DEFAULT_TENANT,
    actor: Annotated[str, typer.Option("--actor")] = "cli",
) -> None:
    """Let the projection try the event again (after a fix)."""
    _resolve(db, tenant, letter_id, "retry", reason, actor)


@dead_letters_app.command("skip")
def dead_letters_skip(
    db: Db,
    letter_id: int,
    reason: Annotated[str, typer.Option("--reason")],
    tenant: Tenant = DEFAULT_TENANT,
    actor: Annotated[str, typer.Option("--actor")] = "cli",
    confirm: Annotated[str, typer.Option("--confirm", help="Type 'skip' to confirm")] = "",
) -> None:
    """Skip the event for that projection; recorded in the audit log."""
    if confirm != "skip":
        _fail("Error: DG_ERR_INVALID_ARGUMENT: skipping needs --confirm skip")
    _resolve(db, tenant, letter_id, "skip", reason, actor)


@app.command("serve")
def serve(
    db: Annotated[str, typer.Option("--db", help="SQLite path or postgresql:// URL")] = (
        "decisiongraph.db"
    ),
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8080,
    workers: Annotated[
        bool | None,
        typer.Option("--workers/--no-workers", help="Projection workers in this process"),
    ] = None,
    processes: Annotated[
        int,
        typer.Option("--processes", help="API processes on this port (PostgreSQL only)"),
    ] = 1,
) -> None:
    """Serve the HTTP API (SQLite: workers in-process; PostgreSQL: run `worker`)."""
    from decisiongraph.service.server import run_server

    try:
        run_server(db, host, port, workers=workers, processes=processes)
    except DecisionGraphError as exc:
        _fail(f"Error: {exc}")


@accounts_app.command("create")
def accounts_create(
    db: Db,
    name: Annotated[str, typer.Option("--name")],
    tenant: Annotated[list[str], typer.Option("--tenant")],
    scope: Annotated[list[str], typer.Option("--scope")],
) -> None:
    """Create a service account; prints its first API key (shown only once)."""
    store = _open(db, must_exist=False)
    try:
        account, key = store.create_account(name, tenant, scope)
    except DecisionGraphError as exc:
        _fail(f"Error: {exc}")
    finally:
        store.close()
    typer.echo(f"account {account.name} ({account.account_id}) created")
    typer.echo(f"API key (shown once): {key}")


@accounts_app.command("list")
def accounts_list(db: Db) -> None:
    """Accounts with tenants, scopes and active key ids (never keys)."""
    store = _open(db)
    try:
        typer.echo(_dump([account.as_dict() for account in store.list_accounts()]))
    finally:
        store.close()


@accounts_app.command("rotate")
def accounts_rotate(db: Db, name: str) -> None:
    """Issue another key; old keys keep working until revoked."""
    store = _open(db)
    try:
        key = store.add_key(name)
    except DecisionGraphError as exc:
        _fail(f"Error: {exc}")
    finally:
        store.close()
    typer.echo(f"API key (shown once): {key}")


@accounts_app.command("revoke")
def accounts_revoke(db: Db, key_id: str) -> None:
    """Revoke one key by its id; takes effect on the next request."""
    store = _open(db)
    try:
        store.revoke_key(key_id)
    except DecisionGraphError as exc:
        _fail(f"Error: {exc}")
    finally:
        store.close()
    typer.echo(f"key {key_id} revoked")


def main() -> None:
    """Entry point of the ``decisiongraph`` console script."""
    try:
        app()
    except DecisionGraphError as exc:
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(1)
