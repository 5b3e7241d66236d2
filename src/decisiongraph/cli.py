"""The ``decisiongraph`` command.

DB is a SQLite path or a ``postgresql://`` URL everywhere. Every error is one
line ``Error: <CODE>: <message>`` on stderr; output on unchanged data is
byte-stable, so scripts can diff it.

Exit codes tell a script what happened without parsing text: 0 success, 1 an
error (the command could not do its job), 2 a usage error (an unknown
option, a missing argument), 3 an integrity finding (``verify`` found
tampering, ``compare`` a mismatch). A tampered log must never share its code
with a typo'd option.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import socket
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO

import typer

# typer carries its own copy of click; its commands, parameters and usage
# errors are that copy's classes, not the click package's.
from typer._click.core import Context, Parameter
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import CommandFunctionType

from decisiongraph.core.envelope import DEFAULT_TENANT, EventEnvelope, envelope_from_dict
from decisiongraph.core.errors import INVALID_ARGUMENT, NOT_FOUND, DecisionGraphError
from decisiongraph.core.operator_records import check_dead_letter_status
from decisiongraph.core.validation import check_tenant_id, validate_envelope
from decisiongraph.projections.rows import check_projection_names
from decisiongraph.runtime import operations
from decisiongraph.runtime.health import projection_statuses
from decisiongraph.runtime.rebuild import compare_with_rebuild, replay_log
from decisiongraph.runtime.supervisor import SupervisorConfig
from decisiongraph.store import refuse_foreign_database
from decisiongraph.store.postgres import PostgresEventStore, is_postgres_url
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sqlite import SQLiteEventStore

EXIT_ERROR = 1
#: click's own code for usage errors, kept so that shells and CI read it alike.
EXIT_USAGE = 2
#: ``verify`` found tampering, ``compare`` a mismatch: the data is wrong, not the call.
EXIT_INTEGRITY = 3


class _PlainArgument(TyperArgument):
    """An argument shown as ``DB`` in help and usage: typer's defaults
    (``{db}`` in usage, ``<str>`` beside it) read like template leftovers."""

    def _usage_display_name(self) -> str:
        name = (self.metavar or self.name or "").upper()
        return name if self.required else f"[{name}]"

    def _rich_display_name(self) -> str:
        return (self.metavar or self.name or "").upper()

    def display_type_rich(self, ctx: Context) -> str | None:
        return None


class _PlainOption(TyperOption):
    """An option shown as ``--tenant TENANT``, a flag as bare ``--json``
    (typer would add ``<str>``, ``<bool>`` or ``<list[str]>``)."""

    def display_type_rich(self, ctx: Context) -> str | None:
        if self.is_flag or self.count:
            return None
        return self.metavar or (self.name or "value").upper()


def _plain(params: list[Parameter]) -> list[Parameter]:
    """Give typer's parameters the plain help display (the parameter
    classes are typer's to choose, the display is ours)."""
    for param in params:
        if type(param) is TyperArgument:
            param.__class__ = _PlainArgument
        elif type(param) is TyperOption:
            param.__class__ = _PlainOption
    return params


class _PlainCommand(TyperCommand):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return _plain(super().get_params(ctx))


class _PlainGroup(TyperGroup):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return _plain(super().get_params(ctx))


class _App(typer.Typer):
    """Every command gets the plain help: one place instead of a ``cls=`` per command."""

    def command(  # same call as typer's, with one keyword defaulted
        self, name: str | None = None, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        kwargs.setdefault("cls", _PlainCommand)
        return super().command(name, **kwargs)


def _app(help_text: str, **extra: Any) -> _App:
    return _App(
        help=help_text, cls=_PlainGroup, add_completion=False, rich_markup_mode=None, **extra
    )


app = _app(
    "DecisionGraph: an append-only, tamper-evident log of decisions.\n\n"
    "Exit codes: 0 ok, 1 error, 2 usage error, 3 integrity problem "
    "(verify found tampering, compare a mismatch).",
    invoke_without_command=True,
)


@app.callback()
def _no_command(ctx: typer.Context) -> None:
    # Spec 12: no sub-command prints the help and exits 1 (click's
    # no_args_is_help would exit 2, its usage-error status).
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(1)


dead_letters_app = _app("Events a projection could not apply.", no_args_is_help=True)
app.add_typer(dead_letters_app, name="dead-letters")
accounts_app = _app("Service accounts and their API keys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")

Db = Annotated[str, typer.Argument(metavar="DB", help="SQLite file path or postgresql:// URL")]
Tenant = Annotated[
    str, typer.Option("--tenant", metavar="TENANT", help="Tenant id (must have events)")
]
NewTenant = Annotated[str, typer.Option("--tenant", metavar="TENANT", help="Tenant id")]
IMPORT_CHUNK = 1000


def _default_actor() -> str:
    """``cli:user@host``: an audit entry should name who acted, and a shared
    ``cli`` would not tell two operators apart."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}@{socket.gethostname()}"


Actor = Annotated[
    str | None,
    typer.Option(
        "--actor",
        metavar="NAME",
        help="Who acts, for the audit log [default: cli:USER@HOST]",
        show_default=False,
    ),
]


def _actor(actor: str | None) -> str:
    """Who the audit log names: ``--actor`` without its surrounding blanks,
    or the OS user at the host when it is not given. A blank ``--actor`` is
    refused rather than replaced: an audit entry must name someone, and the
    operator meant to name someone else than the default."""
    if actor is None:
        return _default_actor()
    if not actor.strip():
        _fail(INVALID_ARGUMENT, "--actor must not be blank")
    return actor.strip()


def _one_line(message: str) -> str:
    """Driver messages (psycopg's) span lines; an error is one line, so that
    ``grep '^Error: '`` finds all of it."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def _fail(code: str, message: str, exit_code: int = EXIT_ERROR) -> NoReturn:
    """The one error format: ``Error: <CODE>: <message>`` on stderr."""
    typer.echo(f"Error: {code}: {_one_line(message)}", err=True)
    raise typer.Exit(exit_code)


def _spec_fail(line: str) -> NoReturn:
    """An error whose wording spec 12 fixes, printed exactly so (exit 1)."""
    typer.echo(line, err=True)
    raise typer.Exit(EXIT_ERROR)


def _error(exc: DecisionGraphError, suffix: str = "") -> NoReturn:
    _fail(exc.code, exc.message + suffix)


def _check_tenant(tenant: str) -> None:
    try:
        check_tenant_id(tenant)
    except DecisionGraphError as exc:
        _error(exc)


def _require_tenant(store: SqlEventStore, tenant: str) -> None:
    """Refuse a tenant with no events, as ``verify`` does.

    Tenants are created by their first event, so any name is a valid query,
    and a mistyped one would otherwise "succeed": ``compare`` would print
    ``match`` and ``export`` write an empty file. Looks at one row (through
    the log's index), not a count.
    """
    if not store.list_events(tenant, limit=1):
        store.close()
        _fail(NOT_FOUND, f"tenant '{tenant}' has no events")


def _refuse_foreign(db: str) -> None:
    """Stop before opening a database that belongs to another application:
    opening migrates, and a read-only command must not turn someone else's
    database into ours (see :func:`refuse_foreign_database`)."""
    try:
        refuse_foreign_database(db)
    except DecisionGraphError as exc:
        _error(exc)


def _open(db: str, *, must_exist: bool = True) -> SqlEventStore:
    """Open a store; a missing SQLite file is an error unless we create it.
    Another application's database is refused by the store itself, before
    anything is written (see :mod:`decisiongraph.store.ownership`)."""
    if is_postgres_url(db):
        return PostgresEventStore(db)
    path = Path(db)
    if path.is_symlink():
        typer.echo(f"Warning: '{db}' is a symlink to '{path.resolve()}'", err=True)
    if must_exist and not path.exists():
        _spec_fail(f"Error: Database file '{db}' not found")
    if path.exists() and not path.is_file():
        _spec_fail(f"Error: '{db}' is not a file")
    if not path.parent.is_dir():
        _fail(NOT_FOUND, f"directory '{path.parent}' of database '{db}' not found")
    return SQLiteEventStore(db)  # as given: a refusal names it so


def _open_tenant(db: str, tenant: str) -> SqlEventStore:
    """An existing database, and a tenant in it that has events (the name is
    checked before the database is opened)."""
    _check_tenant(tenant)
    store = _open(db)
    _require_tenant(store, tenant)
    return store


def _dump(value: Any, *, ascii_only: bool = True) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=ascii_only)


# -- reading event files -----------------------------------------------------
class _Unreadable(Exception):
    """The file as a whole is not an event file; one message says why."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object with one value per key: a repeated key is ambiguous (JSON
    parsers disagree on which value wins), so an event holding one is
    refused rather than imported "as given" with a guess."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return document


def _loads(text: str) -> Any:
    """``json.loads`` refusing repeated keys (and, as it does, integers of
    more than 4,300 digits: both raise ValueError)."""
    return json.loads(text, object_pairs_hook=_unique_keys)


def _lines(text: str) -> list[str]:
    """JSON Lines split at line feeds only: U+2028, U+0085 and the other
    characters ``str.splitlines`` breaks at may stand raw inside JSON
    strings (``export`` writes them so)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _first_line_is_json(text: str) -> bool:
    """Whether the first non-blank line is a JSON value on its own.

    Tells JSON Lines (every record on its line) from a pretty-printed
    document, whose first line (``{`` or ``[``) never is: a broken line in
    the former is reported per line, a syntax error in the latter once.
    """
    for line in _lines(text):
        if line.strip():
            try:
                _loads(line)
            except ValueError:  # JSONDecodeError is one
                return False
            return True
    return False


def _documents(text: str) -> Iterator[tuple[str, Any]]:
    """(position, decoded envelope) for each event in a file's text.

    Golden format (an object with ``events``), a JSON array, or JSON Lines.
    Raises :class:`_Unreadable` when the text is none of them as a whole.
    """
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            whole = _loads(text)
        except ValueError as exc:
            if not _first_line_is_json(text):
                # One document with a syntax error: reading it as JSON Lines
                # would report every one of its lines as malformed.
                where = (
                    f" at line {exc.lineno} column {exc.colno}"
                    if isinstance(exc, json.JSONDecodeError)
                    else ""
                )
                message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                raise _Unreadable(f"malformed JSON{where}: {message}") from None
            whole = None  # JSON Lines: its lines are read one by one below
        if isinstance(whole, dict) and "events" in whole:
            events = whole["events"]
            if not isinstance(events, list):
                raise _Unreadable('"events" must be an array of event envelopes')
            for index, item in enumerate(events):
                yield f"event {index}", item
            return
        if isinstance(whole, list):
            for index, item in enumerate(whole):
                yield f"event {index}", item
            return
        if isinstance(whole, dict):
            yield "line 1", whole
            return
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", _loads(line)
        except ValueError as exc:  # JSONDecodeError is one
            yield f"line {number}", exc


def _read_envelopes(path: str) -> tuple[list[EventEnvelope], list[str]]:
    """Parse and fully validate every event (structure, payload rules, the
    PII guard, floats), and report every problem with its position before
    anything is stored; returns the envelopes and their positions.

    Only what depends on stored state (sequencing, idempotency) is left to
    the append, which stops at its first failure.
    """
    try:
        # A byte order mark, which some editors write, is not part of the JSON.
        text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8-sig")
        text = text.removeprefix("\ufeff")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(INVALID_ARGUMENT, f"cannot read '{path}': {exc}")
    envelopes: list[EventEnvelope] = []
    positions: list[str] = []
    problems: list[str] = []
    try:
        documents = list(_documents(text))
    except _Unreadable as exc:
        _fail(INVALID_ARGUMENT, f"{exc}; nothing was imported from '{path}'")
    for position, item in documents:
        if isinstance(item, ValueError):
            message = item.msg if isinstance(item, json.JSONDecodeError) else str(item)
            problems.append(f"{INVALID_ARGUMENT}: {position}: malformed JSON: {message}")
            continue
        try:
            envelope = envelope_from_dict(item)
            validate_envelope(envelope)
        except DecisionGraphError as exc:
            problems.append(f"{exc.code}: {position}: {exc.message}")
            continue
        envelopes.append(envelope)
        positions.append(position)
    if problems:
        for problem in problems:
            typer.echo(f"Error: {problem}", err=True)
        _fail(
            INVALID_ARGUMENT, f"{len(problems)} invalid event(s) in '{path}'; nothing was imported"
        )
    return envelopes, positions


def _new_file_mode(target: Path) -> int:
    """The mode ``open(target, "w")`` would leave: the old file's, or 0666
    less the umask (a temporary file is created 0600)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def _output(file: str) -> Iterator[TextIO]:
    """The file to write, or stdout (left open) for '-'.

    A regular file is written beside its target and renamed over it once
    complete, so a failed export leaves neither a half-written file nor a
    truncated old one; a device or pipe (``/dev/stdout``) is written in
    place. A path that cannot be written is an error, not a traceback.
    """
    if file == "-":
        yield sys.stdout
        return
    target = Path(os.path.realpath(file))  # through symlinks, as open() would
    if target.is_dir():
        _fail(INVALID_ARGUMENT, f"cannot write '{file}': it is a directory")
    if target.exists() and not target.is_file():
        try:
            with open(target, "w", encoding="utf-8") as out:
                yield out
        except OSError as exc:
            _fail(INVALID_ARGUMENT, f"cannot write '{file}': {exc.strerror or exc}")
        return
    try:
        handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        _fail(INVALID_ARGUMENT, f"cannot write '{file}': {exc.strerror or exc}")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            yield out
        os.chmod(temp, _new_file_mode(target))
        os.replace(temp, target)
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            _fail(INVALID_ARGUMENT, f"cannot write '{file}': {exc.strerror or exc}")
        raise


# -- commands ------------------------------------------------------------------
@app.command("import")
def import_events(
    db: Db,
    file: Annotated[str, typer.Argument(metavar="FILE", help="Event file ('-' for stdin)")],
    tenant: NewTenant = DEFAULT_TENANT,
) -> None:
    """Append the events of FILE exactly as given, all or nothing."""
    _check_tenant(tenant)
    envelopes, positions = _read_envelopes(file)
    store = _open(db, must_exist=False)
    try:
        stored = store.append(tenant, envelopes, project=True)
    except DecisionGraphError as exc:
        index = exc.details.get("index")
        if isinstance(index, int) and 0 <= index < len(positions):
            # The batch's "event N: " prefix gives way to the file position.
            message = exc.message.removeprefix(f"event {index}: ")
            _fail(exc.code, f"{positions[index]}: {message}; nothing was imported")
        _error(exc, "; nothing was imported")
    finally:
        store.close()
    repeats = sum(1 for event in stored if event.repeated)
    last = max((event.log_seq for event in stored), default=0)
    typer.echo(
        f"Imported {len(stored) - repeats} event(s), {repeats} idempotent repeat(s); "
        f"last log_seq {last}"
    )


@app.command("export")
def export_events(
    db: Db,
    file: Annotated[str, typer.Argument(metavar="FILE", help="Output file ('-' for stdout)")],
    tenant: Tenant = DEFAULT_TENANT,
) -> None:
    """Write the tenant's log as JSON Lines (FILE may be '-' for stdout)."""
    store = _open_tenant(db, tenant)
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
    to: Annotated[
        int | None, typer.Option("--to", metavar="LOG_SEQ", help="Replay up to this log_seq")
    ] = None,
) -> None:
    """Rebuild the projections from the log on a private replica; print digests.

    The database itself is only read. Audited operator skips are honoured,
    as the live projections honour them, and listed (on stderr with --json,
    whose stdout stays one JSON object).
    """
    store = _open_tenant(db, tenant)
    try:
        replayed = replay_log(store, tenant, to)
    except DecisionGraphError as exc:  # spec 12's wording, then the code
        _spec_fail(f"Error replaying projections: {exc.code}: {_one_line(exc.message)}")
    finally:
        store.close()
    digests = replayed.digests.as_dict()
    skips = _skips_line(replayed.skipped, "the replay")
    if as_json:
        typer.echo(json.dumps(digests))
        if skips:
            typer.echo(skips, err=True)
        return
    typer.echo("Projection digests after replay:")
    for name in sorted(digests):
        typer.echo(f"  {name}: {digests[name]}")
    if skips:
        typer.echo(skips)


def _skips_line(skipped: Mapping[str, Sequence[int]], who: str) -> str | None:
    """The audited skips a replay or rebuild honoured, as one line (None if
    there were none): digests that leave events out must say so."""
    if not skipped:
        return None
    listed = ", ".join(f"{name}@{seq}" for name, seqs in sorted(skipped.items()) for seq in seqs)
    return f"operator skips in effect ({who} skipped them too): {listed}"


@app.command("projection-status")
def projection_status(
    db: Db,
    tenant: Tenant = DEFAULT_TENANT,
    include_digests: Annotated[
        bool, typer.Option("--include-digests", help="Also the four digests")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON with spec 12's keys")] = False,
) -> None:
    """Per projection: cursor, head, lag, status, owner, last error."""
    store = _open_tenant(db, tenant)
    try:
        statuses = projection_statuses(store, tenant)
        stats = store.log_stats(tenant)
        projected = store.projection_cursor(tenant)  # the lowest projection's cursor
        digests = store.digests(tenant).as_dict() if include_digests else None
    finally:
        store.close()
    if as_json:
        # Spec 12 / 10.6's keys, plus the tenant and the per-projection detail.
        typer.echo(
            _dump(
                {
                    "tenant": tenant,
                    "event_count": stats.event_count,
                    "trace_count": stats.trace_count,
                    "event_log_last_seq": stats.last_log_seq,
                    "projected_last_seq": projected,
                    "pending_events": max(stats.last_log_seq - projected, 0),
                    "is_stale": projected < stats.last_log_seq,
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
        if status.last_error:  # one line: PostgreSQL's messages carry "LINE 1: ..." parts
            typer.echo(f"{'':<18} last error: {' '.join(status.last_error.split())}")
    if digests is not None:
        for name in sorted(digests):
            typer.echo(f"  {name}: {digests[name]}")


@app.command("dump-trace")
def dump_trace(
    db: Db,
    trace_id: Annotated[str, typer.Argument(metavar="TRACE_ID")],
    tenant: Tenant = DEFAULT_TENANT,
    include_payload: Annotated[
        bool, typer.Option("--include-payload", help="Also source, actor, payload and hashes")
    ] = False,
) -> None:
    """The trace's events in trace_seq order, as JSON."""
    store = _open_tenant(db, tenant)
    try:
        events = store.get_trace_events(tenant, trace_id)
    finally:
        store.close()
    if not events:  # spec 12's wording, then the code
        _spec_fail(
            f"Error getting trace events: {NOT_FOUND}: "
            f"trace '{trace_id}' has no events in tenant '{tenant}'"
        )
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
def verify(
    db: Db,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", metavar="TENANT", help="Only this tenant [default: all]"),
    ] = None,
) -> None:
    """Recompute every tenant's hash chain and payload hashes.

    Exits 3 naming the first bad log_seq when a row was edited, deleted or
    moved behind the store's back (2 is a usage error, such as a mistyped
    option, which must never read as tampering). Record the printed head hashes elsewhere:
    they pin the log as of now. Tenants come from the log as well as from
    the head table, so a deleted head row or rows forged for a new tenant
    cannot hide; and checking nothing (an unknown --tenant, an empty
    database) exits 1, so that a typo never reads as a clean audit.
    """
    if tenant is not None:
        _check_tenant(tenant)
    store = _open(db)
    bad = False
    verified = 0
    try:
        tenants = [tenant] if tenant is not None else store.tenants_in_log()
        for name in tenants:
            problem = store.verify_chain(name)
            if problem is not None:
                bad = True
                typer.echo(
                    f"tenant {name}: TAMPERED at log_seq {problem.log_seq}: {problem.reason}"
                )
                continue
            stats = store.log_stats(name)
            if stats.event_count == 0:
                if tenant is None:  # an empty head row: nothing to check, nothing wrong
                    typer.echo(f"tenant {name}: no events")
                continue
            verified += 1
            chain = store.list_events(name, since_log_seq=stats.last_log_seq - 1, limit=1)
            head_hash = chain[0].chain_hash if chain else "-"
            typer.echo(f"tenant {name}: OK, {stats.event_count} events, head {head_hash}")
    finally:
        store.close()
    if bad:
        raise typer.Exit(EXIT_INTEGRITY)
    if tenant is not None and not verified:
        _fail(NOT_FOUND, f"tenant '{tenant}' has no events; nothing was verified")
    if not verified:
        _fail(NOT_FOUND, f"no events in '{db}'; nothing was verified")


@app.command("seed")
def seed(
    db: Db,
    traces: Annotated[
        int, typer.Option("--traces", min=1, metavar="N", help="How many traces to append")
    ],
    seed_value: Annotated[int, typer.Option("--seed", metavar="S", help="Random seed")] = 0,
    tenant: NewTenant = DEFAULT_TENANT,
) -> None:
    """Append N deterministic, realistic decision traces (same seed, same digests)."""
    from decisiongraph.seed import generate_events

    _check_tenant(tenant)
    store = _open(db, must_exist=False)
    written = repeats = 0
    batch: list[EventEnvelope] = []

    def flush() -> None:
        # Seeding again is idempotent: count what was already there apart,
        # so a second run does not claim to have written anything.
        nonlocal written, repeats
        for event in store.append(tenant, batch, project=True):
            written += 1
            repeats += event.repeated
        batch.clear()

    try:
        for raw in generate_events(traces, seed_value):
            batch.append(envelope_from_dict(raw))
            if len(batch) >= IMPORT_CHUNK:
                flush()
        if batch:
            flush()
        store.project_pending(tenant)
        digests = store.digests(tenant).as_dict()
    except DecisionGraphError as exc:
        _error(exc)
    finally:
        store.close()
    typer.echo(
        f"Seeded {traces} traces ({written} events: {written - repeats} new, "
        f"{repeats} already present) into tenant {tenant}"
    )
    for name in sorted(digests):
        typer.echo(f"  {name}: {digests[name]}")


#: Seconds an idle worker may sleep between polls. Zero (or nan) would spin
#: a core; beyond an hour a lost NOTIFY leaves events unprojected for longer
#: than anyone would wait (and the thread's wait overflows near 1e11).
POLL_INTERVAL_RANGE = (0.01, 3600.0)
#: Seconds a lease lives unrenewed. Under a second a busy worker could lose
#: its lease between renewals (every third of the time to live); beyond a day
#: a crashed worker's projections stay stalled for that long, and infinity
#: would never let another worker take them over.
LEASE_TTL_RANGE = (1.0, 86400.0)


def _check_seconds(option: str, value: float, bounds: tuple[float, float]) -> None:
    """A finite number of seconds within ``bounds``, or one line naming the
    option (exit 2, as for any other option value out of its range)."""
    least, most = bounds
    if not (math.isfinite(value) and least <= value <= most):
        _fail(
            INVALID_ARGUMENT,
            f"{option} must be a number of seconds from {least:g} to {most:g}, not {value:g}",
            EXIT_USAGE,
        )


@app.command("worker")
def worker(
    db: Db,
    tenant: Annotated[
        list[str] | None,
        typer.Option(
            "--tenant", metavar="TENANT", help="Only this tenant (repeatable) [default: all]"
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, metavar="N", help="Events per transaction")
    ] = 1000,
    poll_interval: Annotated[
        float,
        typer.Option(
            "--poll-interval",
            metavar="SECONDS",
            help=f"Idle poll period ({POLL_INTERVAL_RANGE[0]} to {POLL_INTERVAL_RANGE[1]:g})",
        ),
    ] = 0.5,
    lease_ttl: Annotated[
        float,
        typer.Option(
            "--lease-ttl",
            metavar="SECONDS",
            help=f"Lease time-to-live ({LEASE_TTL_RANGE[0]:g} to {LEASE_TTL_RANGE[1]:g})",
        ),
    ] = 10.0,
    connections: Annotated[
        int,
        typer.Option(
            "--connections",
            min=1,
            metavar="N",
            help="Database connections the workers share, however many tenants",
        ),
    ] = 4,
) -> None:
    """Run projection workers until SIGTERM (drains the in-flight batch)."""
    import logging

    from decisiongraph.runtime.process import run_worker_process

    for name in tenant or ():  # a worker may wait for a tenant's first event
        _check_tenant(name)
    _check_seconds("--poll-interval", poll_interval, POLL_INTERVAL_RANGE)
    _check_seconds("--lease-ttl", lease_ttl, LEASE_TTL_RANGE)
    if not is_postgres_url(db) and not Path(db).exists():
        _spec_fail(f"Error: Database file '{db}' not found")
    _refuse_foreign(db)
    try:
        config = SupervisorConfig(
            tenants=tenant or None,
            batch_size=batch_size,
            poll_interval=poll_interval,
            lease_ttl=lease_ttl,
            connections=connections,
        )
    except DecisionGraphError as exc:
        _error(exc)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_worker_process(db, config)


@app.command("rebuild")
def rebuild(
    db: Db,
    projection: Annotated[
        str, typer.Option("--projection", metavar="NAME", help="One of the projections")
    ],
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why, for the audit log")],
    tenant: Tenant = DEFAULT_TENANT,
    actor: Actor = None,
) -> None:
    """Rebuild a projection online (shadow tables, then an atomic swap)."""
    try:
        check_projection_names([projection])
    except DecisionGraphError as exc:
        _error(exc)
    if not reason.strip():
        _fail(INVALID_ARGUMENT, "--reason must not be blank")
    who = _actor(actor)
    store = _open_tenant(db, tenant)
    try:
        cursor = operations.rebuild(
            store,
            tenant,
            projection,
            actor=who,
            reason=reason,
            confirm=projection,
        )
    except DecisionGraphError as exc:
        _error(exc)
    finally:
        store.close()
    typer.echo(f"Rebuilt {projection} of tenant {tenant}; live at log_seq {cursor}")


@app.command("compare")
def compare(db: Db, tenant: Tenant = DEFAULT_TENANT) -> None:
    """Live projection digests against a fresh rebuild: 'match' or the first difference."""
    store = _open_tenant(db, tenant)
    try:
        result = compare_with_rebuild(store, tenant)
    except DecisionGraphError as exc:
        _error(exc)
    finally:
        store.close()
    typer.echo("match" if result.match else f"MISMATCH in {result.first_difference}")
    skips = _skips_line(result.skipped, "the rebuild")
    if skips:
        typer.echo(skips)
    if not result.match:
        raise typer.Exit(EXIT_INTEGRITY)


@dead_letters_app.command("list")
def dead_letters_list(
    db: Db,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", metavar="TENANT", help="Only this tenant [default: all]"),
    ] = None,
    status: Annotated[
        str | None, typer.Option("--status", metavar="STATUS", help="Only this status")
    ] = None,
) -> None:
    """Dead letters as JSON (all tenants unless --tenant)."""
    try:
        check_dead_letter_status(status)
    except DecisionGraphError as exc:
        _error(exc)
    store = _open(db) if tenant is None else _open_tenant(db, tenant)
    try:
        letters = store.dead_letters(tenant, status=status)
    finally:
        store.close()
    typer.echo(_dump([letter.as_dict() for letter in letters]))


def _elsewhere(store: SqlEventStore, letter_id: int, tenant: str) -> str | None:
    """Where a letter the operator named under the wrong tenant really is
    (None: nowhere else).

    The store only says "another tenant" (its message reaches API callers
    too); the CLI has the whole database, so it names the owner and the
    ``--tenant`` that would find it.
    """
    owner = store.dead_letter_tenant(letter_id)
    if owner is None or owner == tenant:
        return None
    return (
        f"dead letter {letter_id} belongs to tenant '{owner}', not to tenant '{tenant}' "
        f"(pass --tenant {owner})"
    )


def _resolve(
    db: str, tenant: str, letter_id: int, action: str, reason: str, actor: str | None
) -> None:
    _check_tenant(tenant)
    who = _actor(actor)
    store = _open(db)
    try:
        if not store.list_events(tenant, limit=1):  # _require_tenant, naming the owner
            elsewhere = _elsewhere(store, letter_id, tenant)
            _fail(NOT_FOUND, elsewhere or f"tenant '{tenant}' has no events")
        letter = store.resolve_dead_letter(
            tenant, letter_id, action=action, actor=who, reason=reason
        )
    except DecisionGraphError as exc:
        elsewhere = _elsewhere(store, letter_id, tenant) if exc.code == NOT_FOUND else None
        _fail(exc.code, elsewhere or exc.message)
    finally:
        store.close()
    typer.echo(
        f"Dead letter {letter.id} ({letter.projection_name}@{letter.log_seq}): {letter.status}"
    )


@dead_letters_app.command("retry")
def dead_letters_retry(
    db: Db,
    letter_id: Annotated[int, typer.Argument(metavar="ID", help="Dead letter id (from list)")],
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why, for the audit log")],
    tenant: Tenant = DEFAULT_TENANT,
    actor: Actor = None,
) -> None:
    """Let the projection try the event again (after a fix)."""
    _resolve(db, tenant, letter_id, "retry", reason, actor)


@dead_letters_app.command("skip")
def dead_letters_skip(
    db: Db,
    letter_id: Annotated[int, typer.Argument(metavar="ID", help="Dead letter id (from list)")],
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why, for the audit log")],
    tenant: Tenant = DEFAULT_TENANT,
    actor: Actor = None,
    confirm: Annotated[
        str, typer.Option("--confirm", metavar="skip", help="Type 'skip' to confirm")
    ] = "",
) -> None:
    """Skip the event for that projection; recorded in the audit log."""
    if confirm != "skip":
        _fail(INVALID_ARGUMENT, "skipping needs --confirm skip")
    _resolve(db, tenant, letter_id, "skip", reason, actor)


def _environment_epilog() -> str:
    from decisiongraph.service.settings import ENVIRONMENT

    width = max(len(name) for name, _ in ENVIRONMENT)
    lines = [f"  {name:<{width}}  {what}" for name, what in ENVIRONMENT]
    # \b keeps click from re-wrapping the table into one paragraph.
    return "\b\nEnvironment variables:\n" + "\n".join(lines)


@app.command("serve", epilog=_environment_epilog())
def serve(
    db: Annotated[
        str,
        typer.Option(
            "--db",
            metavar="DB",
            envvar="DG_DB",
            help="SQLite path (created if missing) or postgresql:// URL",
        ),
    ] = "decisiongraph.db",
    host: Annotated[str, typer.Option("--host", metavar="HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="0: any free port")] = 8080,
    workers: Annotated[
        bool | None,
        typer.Option(
            "--workers/--no-workers",
            help="Projection workers in this process [default: SQLite yes, PostgreSQL no]",
            show_default=False,
        ),
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            "--processes", metavar="N", help="API processes on this port (PostgreSQL only)"
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (SQLite: workers in-process; PostgreSQL: run `worker`).

    Prints one line once it is listening: the URL, the database (and whether
    it was just created) and where the projection workers run.
    """
    from decisiongraph.service.server import run_server

    if is_postgres_url(db) or Path(db).is_file():
        _refuse_foreign(db)  # a missing file is created; any other path, run_server reports
    try:
        run_server(db, host, port, workers=workers, processes=processes)
    except DecisionGraphError as exc:
        _error(exc)


@accounts_app.command("create")
def accounts_create(
    db: Db,
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="Account name")],
    tenant: Annotated[
        list[str],
        typer.Option("--tenant", metavar="TENANT", help="A tenant it may use (repeatable)"),
    ],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope", metavar="SCOPE", help="events:read, events:write or admin (repeatable)"
        ),
    ],
) -> None:
    """Create a service account; prints its first API key (shown only once)."""
    for tenant_id in tenant:  # an account may be made before its tenants have events
        _check_tenant(tenant_id)
    store = _open(db, must_exist=False)
    try:
        account, key = store.create_account(name, tenant, scope)
    except DecisionGraphError as exc:
        _error(exc)
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
def accounts_rotate(db: Db, name: Annotated[str, typer.Argument(metavar="NAME")]) -> None:
    """Issue another key; old keys keep working until revoked."""
    store = _open(db)
    try:
        key = store.add_key(name)
    except DecisionGraphError as exc:
        _error(exc)
    finally:
        store.close()
    typer.echo(f"API key (shown once): {key}")


@accounts_app.command("revoke")
def accounts_revoke(db: Db, key_id: Annotated[str, typer.Argument(metavar="KEY_ID")]) -> None:
    """Revoke one key by its id; takes effect on the next request."""
    store = _open(db)
    try:
        store.revoke_key(key_id)
    except DecisionGraphError as exc:
        _error(exc)
    finally:
        store.close()
    typer.echo(f"key {key_id} revoked")


def main() -> None:
    """Entry point of the ``decisiongraph`` console script.

    Runs click outside its standalone mode so that usage errors come out in
    the same ``Error: <CODE>: <message>`` form as every other error (after
    the usage line), still with click's exit code 2.
    """
    try:
        # One program name in usage lines, however started (`python -m` too).
        result = app(prog_name="decisiongraph", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # a group without its sub-command: just the help
        typer.echo(exc.format_message(), err=True)
        sys.exit(EXIT_USAGE)
    except UsageError as exc:
        if exc.ctx is not None:
            typer.echo(exc.ctx.get_usage(), err=True)
            typer.echo(f"Try '{exc.ctx.command_path} --help' for help.", err=True)
        typer.echo(f"Error: {INVALID_ARGUMENT}: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(EXIT_ERROR)
    except DecisionGraphError as exc:
        typer.echo(f"Error: {exc.code}: {_one_line(exc.message)}", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(result if isinstance(result, int) else 0)
