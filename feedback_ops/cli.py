"""The `feedback-ops` command: up, run, deploy, pool-failover, config sync, schedule,
policy, calendar, pos status.

Prefect reads its settings when first imported, so this module imports nothing of
Prefect (nor of the flows) until the environment is prepared for the command.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from sqlalchemy import Engine

DEFAULT_PORT = 4200
STOCKHOLM_NAME = "Europe/Stockholm"


def _prepare_environment() -> None:
    """Load `.env`, and keep Prefect's state in the project's git-ignored folder."""
    from dotenv import load_dotenv

    from feedback_ops.state import loosened, make_private, warning_for

    load_dotenv(Path.cwd() / ".env", override=False)
    state = Path(os.environ.get("FEEDBACK_OPS_STATE_DIR") or Path.cwd() / ".state").absolute()
    os.environ.setdefault("FEEDBACK_OPS_STATE_DIR", str(state))
    os.environ.setdefault("PREFECT_HOME", str(state / "prefect"))
    home = Path(os.environ["PREFECT_HOME"])
    make_private(state, home)
    for folder in (state,) if home.is_relative_to(state) else (state, home):
        if warning := warning_for(loosened(folder), folder):
            _fail(warning)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary API of a `run` migrates a fresh SQLite database first: on two busy
    # cores that can pass Prefect's default 20 s limit, and the run would fail by chance.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # The servers `up` and `run` start keep concurrency leases in files under
    # PREFECT_HOME, not in the server's memory: the lock of a run that died is then
    # freed when its lease runs out, also after the server restarted (flows/locks.py).
    os.environ.setdefault(
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE",
        "prefect.server.concurrency.lease_storage.filesystem",
    )
    # A run waiting for a lock asks again at least this often, so it follows soon after.
    os.environ.setdefault("PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS", "5")


def _port() -> int:
    return int(os.environ.get("FEEDBACK_OPS_PORT") or DEFAULT_PORT)


def _fail(message: str) -> None:
    print(f"feedback-ops: {message}", file=sys.stderr)


# --- run ---------------------------------------------------------------------------


def _parse_parameters(pairs: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"parameter {pair!r} is not key=value")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def _choose_api() -> tuple[str, bool]:
    """The Prefect API this run reports to, and whether the command must start it.

    Decided before Prefect is imported, which reads PREFECT_API_URL once: an API named
    by PREFECT_API_URL; else a running `feedback-ops up`, whose UI then shows the run;
    else a server this command starts (after the parameters are checked), on the same
    database, so the UI shows the run at its next start.
    """
    if api := os.environ.get("PREFECT_API_URL"):
        return api, False
    from feedback_ops.server import api_answers, free_port

    local = f"http://127.0.0.1:{_port()}/api"
    if api_answers(local):
        os.environ["PREFECT_API_URL"] = local
        return local, False
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{free_port()}/api"
    return os.environ["PREFECT_API_URL"], True


def check_parameters(flow: Any, params: dict[str, Any]) -> dict[str, Any]:
    """`params` checked against the flow's own parameter types (the schema the UI's form
    enforces), before anything starts; returned as given, for Prefect to read again.

    Raises:
        ValueError: one line naming each parameter that is wrong, and why.
    """
    from typing import get_type_hints

    from pydantic import ConfigDict, ValidationError, create_model

    signature = inspect.signature(flow.fn)
    if unknown := sorted(set(params) - set(signature.parameters)):
        raise ValueError(
            f"{flow.name} has no parameter {', '.join(unknown)}; "
            f"it takes {', '.join(signature.parameters)}"
        )
    hints = get_type_hints(flow.fn, include_extras=True)
    fields: dict[str, Any] = {
        name: (hints.get(name, Any), ... if p.default is p.empty else p.default)
        for name, p in signature.parameters.items()
    }
    model = create_model(
        "Parameters", __config__=ConfigDict(arbitrary_types_allowed=True), **fields
    )
    try:
        model.model_validate(params)
    except ValidationError as exc:
        problems = [_explain_error(error) for error in exc.errors()]
        raise ValueError(f"invalid parameters for {flow.name}: {'; '.join(problems)}") from None
    return params


def _explain_error(error: Any) -> str:
    name = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"{name} is required"
    if error["type"] == "string_pattern_mismatch":
        from flows.parameters import SHAPES

        pattern = error["ctx"]["pattern"]
        why = f"must be {SHAPES[pattern]}" if pattern in SHAPES else f"must match {pattern}"
    elif error["type"] == "timezone_aware":
        why = "give the time with its offset, e.g. 2026-12-01T02:00:00+01:00"
    else:
        why = str(error["msg"])
    return f"{name}={error['input']!r}: {why}"


def cmd_run(args: argparse.Namespace) -> int:
    """Run one flow now, in this process, and report its final state.

    The environment configures this run only: it is laid over the saved blocks in
    memory (`blocks.run_only_blocks`) and nothing is saved.
    """
    api, start_own = _choose_api()

    from prefect.client.schemas.objects import State

    from deployments import flows_by_name
    from feedback_ops.errors import OpsError

    report: dict[str, Any] = {"flow": args.flow, "flow_run_id": None, "state": "Failed"}
    flows = flows_by_name()
    if args.flow not in flows:
        report["message"] = f"unknown flow {args.flow!r}; known: {', '.join(sorted(flows))}"
        return _report(report, args.json)
    flow = flows[args.flow]
    try:
        params = check_parameters(flow, _parse_parameters(args.param))
        from feedback_ops.config import blocks_from_env

        blocks_from_env(os.environ)  # bad settings fail here, before any API starts
    except (OpsError, ValueError) as exc:
        report["message"] = _one_line(exc)
        return _report(report, args.json)

    try:
        with _api_for_the_run(start_own):
            state = _run_with_run_only_blocks(flow, params)
    except KeyboardInterrupt:
        report["state"] = "Crashed"
        report["message"] = f"{args.flow} was interrupted (Ctrl-C) and did not finish"
        return _report(report, args.json, interrupted=True)
    except Exception as exc:  # noqa: BLE001 - the API did not start, or went away
        # Whatever stopped the run before it had a state, the documented answer is still
        # printed: one line, the reason in `message`.
        report["message"] = f"{args.flow} could not run: {_one_line(exc)} (Prefect API: {api})"
        return _report(report, args.json)
    report["flow_run_id"] = str(state.state_details.flow_run_id)
    report["state"] = state.name or state.type.value.title()
    if state.is_completed():
        result = state.result()
        report["result"] = (
            result.model_dump(mode="json") if hasattr(result, "model_dump") else result
        )
    else:
        outcome = cast("State[Any]", state).result(raise_on_failure=False)
        report["message"] = (
            _one_line(outcome) if isinstance(outcome, BaseException) else (state.message or "")
        )
    return _report(report, args.json)


@contextmanager
def _api_for_the_run(start_own: bool) -> Iterator[None]:
    """Start the run's own Prefect server if it needs one; afterwards send Prefect's
    queued logs and events while the server still answers, then stop it."""
    from feedback_ops.server import server_for_one_run

    state = Path(os.environ["FEEDBACK_OPS_STATE_DIR"])
    with server_for_one_run(state, os.environ["PREFECT_API_URL"]) if start_own else nullcontext():
        try:
            yield
        finally:
            _send_queued_logs_and_events()


def _send_queued_logs_and_events() -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=10)


def _run_with_run_only_blocks(flow: Any, params: dict[str, Any]) -> Any:
    """Call the flow with the environment's configuration laid over the saved blocks,
    saying on stderr which blocks differ from the saved ones for this run."""
    from blocks import run_only_blocks
    from feedback_ops.config import blocks_from_env, changes, saved_blocks

    saved = saved_blocks()
    blocks = blocks_from_env(os.environ, saved)
    differ = changes(saved, blocks)
    unsaved = [name for name, fields in differ.items() if fields == ["(new)"]]
    overridden = [f"{name} ({', '.join(f)})" for name, f in differ.items() if name not in unsaved]
    if overridden:
        _fail(f"this run only, from the environment, nothing saved: {', '.join(overridden)}")
    if unsaved:
        _fail(
            f"not saved yet, taken from the environment for this run: {', '.join(unsaved)} "
            "(`feedback-ops config sync` saves them)"
        )
    with run_only_blocks(blocks):
        return flow(**params, return_state=True)


def _report(report: dict[str, Any], as_json: bool, *, interrupted: bool = False) -> int:
    ok = report["state"] == "Completed"
    if as_json:
        print(json.dumps(report))
    elif ok:
        print(f"{report['flow']}: Completed (flow run {report['flow_run_id']})")
        for key, value in (report.get("result") or {}).items():
            print(f"  {key}: {value}")
    else:
        print(f"{report['flow']}: {report['state']}: {report.get('message', '')}")
    if interrupted:
        # Prefect's thread that waited for a lock may still be polling, and the exit
        # would wait for it; the run is recorded as Crashed and the answer printed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return 0 if ok else 1


# --- schedule ------------------------------------------------------------------------


def _parse_start(text: str | None, option: str = "--start") -> datetime:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(STOCKHOLM_NAME)
    if text is None:
        return datetime.now(zone)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is not an ISO date or date-time") from None
    if len(text) == 10:
        parsed = datetime.combine(date.fromisoformat(text), time(0), zone)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def cmd_schedule(args: argparse.Namespace) -> int:
    """Print every deployment's runs in a span, from the schedules that are served."""
    from deployments import upcoming_runs

    try:
        start = _parse_start(args.start)
    except ValueError as exc:
        _fail(str(exc))
        return 2
    if args.days < 1:
        _fail("--days must be at least 1")
        return 2
    runs = upcoming_runs(start, start + timedelta(days=args.days))
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    # A sweep that runs every minute would bury the daily jobs: the table shows it once.
    counts = Counter((r["flow"], r["deployment"]) for r in runs)
    frequent = {key for key, n in counts.items() if n > 24 * args.days}
    print(f"Runs from {start:%Y-%m-%d %H:%M} for {args.days} days ({STOCKHOLM_NAME}):")
    rows = [
        (f"{datetime.fromisoformat(r['at']):%a %Y-%m-%d %H:%M %z}", r["flow"], r["deployment"])
        for r in runs
        if (r["flow"], r["deployment"]) not in frequent
    ]
    rows += [
        (f"{counts[key]} runs ({counts[key] // args.days}/day)", *key) for key in sorted(frequent)
    ]
    _print_table(("when (Stockholm)", "flow", "deployment"), rows)
    return 0


# --- calendar ------------------------------------------------------------------------


def calendar_document(year: int) -> dict[str, Any]:
    """The `calendar --json` document: holidays and maintenance windows of `year`."""
    from policy import maintenance_windows, swedish_holidays

    return {
        "year": year,
        "holidays": [
            {"date": h.date.isoformat(), "name_sv": h.name_sv, "name_en": h.name_en}
            for h in swedish_holidays(year)
        ],
        "maintenance_windows": [
            {"kind": w.kind, "start": w.start.isoformat(), "end": w.end.isoformat()}
            for w in maintenance_windows(year)
        ],
    }


def cmd_calendar(args: argparse.Namespace) -> int:
    """Print a year's Swedish holidays and planned maintenance windows."""
    try:
        document = calendar_document(args.year)
    except ValueError as exc:
        _fail(str(exc))
        return 2
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    print(f"Swedish holidays {args.year}")
    _print_table(
        ("date", "day", "name (sv)", "name (en)"),
        [
            (h["date"], date.fromisoformat(h["date"]).strftime("%a"), h["name_sv"], h["name_en"])
            for h in document["holidays"]
        ],
    )
    print(f"\nPlanned maintenance windows {args.year} ({STOCKHOLM_NAME})")
    _print_table(
        ("kind", "start", "end"),
        [
            (
                w["kind"],
                datetime.fromisoformat(w["start"]).strftime("%a %Y-%m-%d %H:%M"),
                datetime.fromisoformat(w["end"]).strftime("%H:%M %z"),
            )
            for w in document["maintenance_windows"]
        ],
    )
    return 0


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    for line in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


# --- pos status ----------------------------------------------------------------------


def read_ops_catalog(read: Callable[[Engine], dict[str, Any]]) -> dict[str, Any] | None:
    """`read(engine)` on the ops catalog the environment names (OPS_DATABASE_URL, else
    DATABASE_URL); None after saying on stderr why it could not be read."""
    from blocks.catalog import opened
    from blocks.names import OPS_DATABASE_BLOCK
    from blocks.postgres import PostgresDatabase
    from feedback_ops.config import blocks_from_env
    from feedback_ops.errors import OpsError

    try:
        ops_db = blocks_from_env(os.environ)[OPS_DATABASE_BLOCK]
        assert isinstance(ops_db, PostgresDatabase)
        with opened(ops_db) as engine:
            return read(engine)
    except OpsError as exc:
        _fail(str(exc))
        return None


def cmd_pos_status(args: argparse.Namespace) -> int:
    """Print each POS provider's state, last check, uptime and merchants at risk, from
    the ops catalog alone."""
    from feedback_ops.pos_status import SLO, status_document, status_rows

    document = read_ops_catalog(lambda engine: status_document(engine, datetime.now(UTC)))
    if document is None:
        return 1
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    print(f"POS providers (uptime against the {SLO:.0%} SLO; ! = below it)")
    _print_table(
        ("provider", "state", "last check (UTC)", "uptime 1d / 7d / 30d", "merchants at risk"),
        status_rows(document),
    )
    return 0


# --- dr history ----------------------------------------------------------------------


def cmd_dr_history(args: argparse.Namespace) -> int:
    """Print the RTO and RPO every DR run and drill achieved, from the ops catalog alone."""
    from feedback_ops.dr_history import history_document, history_rows

    document = read_ops_catalog(history_document)
    if document is None:
        return 1
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    titles = {"real": "DR runs", "drills": "Drills", "dry_runs": "Dry runs"}
    for group, title in titles.items():
        print(f"{title} (achieved / target; ! = missed)")
        rows = history_rows(document, group)
        if rows:
            _print_table(("started (UTC)", "scenario", "status", "RTO", "RPO", "run"), rows)
        else:
            print("  none")
        print()
    return 0


# --- policy --------------------------------------------------------------------------


def policy_document(severity: str, at: datetime) -> dict[str, Any]:
    """The `policy --json` document: the routing decision for one alert, and why."""
    from policy import route

    decision = route(severity, at)
    plan = decision.plan
    return {
        "at": plan.at.isoformat(),
        "period": str(plan.period),
        "holiday": plan.holiday.name_sv if plan.holiday else None,
        "severity": str(plan.severity),
        "respond_within_minutes": plan.respond_within_minutes,
        "respond_by": plan.respond_by.isoformat() if plan.respond_by else None,
        "next_business_day": plan.next_business_day,
        "channels": [str(c) for c in decision.channels],
        "queued": decision.queued,
        "escalation": list(plan.escalation),
        "reason": plan.reason,
    }


def cmd_policy(args: argparse.Namespace) -> int:
    """Print how an alert of a severity raised at a moment is routed, and why."""
    try:
        at = _parse_start(args.at, "--at")
        document = policy_document(args.severity, at)
    except ValueError as exc:
        _fail(str(exc))
        return 2
    if args.json:
        print(json.dumps(document, ensure_ascii=False))
        return 0
    when = (
        "next business day"
        if document["next_business_day"]
        else (f"{document['respond_within_minutes']} min")
    )
    print(document["reason"])
    _print_table(
        ("at", "period", "holiday", "respond", "channels", "escalation"),
        [
            (
                document["at"],
                document["period"],
                document["holiday"] or "-",
                when,
                ", ".join(document["channels"]) + (" (queued)" if document["queued"] else ""),
                " → ".join(document["escalation"]),
            )
        ],
    )
    return 0


# --- config sync ---------------------------------------------------------------------


def cmd_config_sync(args: argparse.Namespace) -> int:
    """Save the environment's configuration into the Prefect blocks every deployment
    uses, as `up` does at its start, and print what changed (field names, no values)."""
    _api, start_own = _choose_api()
    from feedback_ops.config import sync_blocks
    from feedback_ops.errors import OpsError

    try:
        with _api_for_the_run(start_own):
            changed = sync_blocks()
    except OpsError as exc:
        _fail(_one_line(exc))
        return 2
    except Exception as exc:  # noqa: BLE001 - the API did not start, or went away
        _fail(f"config sync could not reach the Prefect API: {_one_line(exc)}")
        return 1
    if args.json:
        print(json.dumps({"changed": changed}))
        return 0
    if not changed:
        print("configuration unchanged: the saved blocks already match the environment")
    for name, fields in changed.items():
        print(f"{name}: {'created' if fields == ['(new)'] else 'updated ' + ', '.join(fields)}")
    return 0


# --- deploy, pool-failover -------------------------------------------------------------


def cmd_deploy(args: argparse.Namespace) -> int:
    """Register every deployment on the work pools of the Prefect server that
    PREFECT_API_URL names, and print what changed."""
    from feedback_ops.deploy import deploy
    from feedback_ops.errors import OpsError

    try:
        outcome = deploy(args.pool, args.standby_pool, args.image)
    except OpsError as exc:
        _fail(f"deploy: {_one_line(exc)}")
        return 2
    except Exception as exc:  # noqa: BLE001 - the server went away or refused half-way
        _fail(
            f"deploy stopped: {_one_line(exc)}; run it again to finish (it changes only "
            "what differs)"
        )
        return 1
    if args.json:
        print(json.dumps(outcome.as_json()))
        return 0
    layout = outcome.layout
    for pool in outcome.pools_created:
        print(f"work pool {pool}: created ({'docker' if args.image else 'process'})")
    for name in outcome.created:
        print(f"{name}: created")
    for name, fields in outcome.updated.items():
        print(f"{name}: updated {', '.join(fields)}")
    pools = layout.primary + (f" and {layout.standby}" if layout.standby else "")
    print(
        f"{len(outcome.created) + len(outcome.updated) + len(outcome.unchanged)} deployments "
        f"on {pools}: {len(outcome.created)} created, {len(outcome.updated)} updated, "
        f"{len(outcome.unchanged)} unchanged; scheduled work runs on {layout.active_pool}"
    )
    return 0


def cmd_pool_failover(args: argparse.Namespace) -> int:
    """Move the scheduled work to the standby work pool, or back to the primary."""
    from feedback_ops.deploy import pool_failover
    from feedback_ops.errors import OpsError

    try:
        report = pool_failover(args.to, force=args.force)
    except OpsError as exc:
        _fail(f"pool-failover: {_one_line(exc)}")
        return 2
    except Exception as exc:  # noqa: BLE001 - the server went away half-way
        _fail(
            f"pool-failover stopped: {_one_line(exc)}; run it again to finish (it is safe "
            "to repeat)"
        )
        return 1
    if args.json:
        print(json.dumps(report.__dict__))
        return 0
    where = (
        f"scheduled work runs on {report.to_pool} (it was already the active side)"
        if report.already_active
        else f"scheduled work now runs on {report.to_pool} (was {report.from_pool})"
    )
    print(
        f"{where}: {report.deployments} deployments, {report.schedules_activated} schedules "
        f"turned on there, {report.schedules_deactivated} turned off on {report.from_pool}, "
        f"{len(report.moved_runs)} waiting runs moved"
    )
    return 0


# --- up ------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    """Start the Prefect server and UI, sync blocks, and serve every deployment."""
    from feedback_ops.up import up

    return up(host=args.host, port=args.port or _port())


# --- entry point ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command line, as documented in the README."""
    parser = argparse.ArgumentParser(
        prog="feedback-ops",
        description="The AI Feedback Platform's operations runbook as Prefect flows.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="Prefect server + UI, blocks synced, deployments served")
    up.add_argument("--host", default="127.0.0.1", help="address to listen on")
    up.add_argument("--port", type=int, default=None, help="UI/API port (default 4200)")
    up.set_defaults(handler=cmd_up)

    deploy = sub.add_parser(
        "deploy", help="register every deployment on work pools of PREFECT_API_URL's server"
    )
    deploy.add_argument("--pool", default="ops-primary", help="primary work pool")
    deploy.add_argument(
        "--standby-pool", default=None, help="standby work pool (schedules inactive there)"
    )
    deploy.add_argument(
        "--image", default=None, help="run flows in this image (creates docker pools)"
    )
    deploy.add_argument("--json", action="store_true", help="print one JSON object")
    deploy.set_defaults(handler=cmd_deploy)

    failover = sub.add_parser(
        "pool-failover", help="move scheduled work to the standby work pool or back"
    )
    failover.add_argument("--to", required=True, metavar="standby|primary")
    failover.add_argument(
        "--force", action="store_true", help="even when the target pool has no ready worker"
    )
    failover.add_argument("--json", action="store_true", help="print one JSON object")
    failover.set_defaults(handler=cmd_pool_failover)

    run = sub.add_parser("run", help="run one flow now")
    run.add_argument("flow", help="flow name, e.g. database-backup")
    run.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="flow parameter (value parsed as JSON when it is JSON)",
    )
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.set_defaults(handler=cmd_run)

    schedule = sub.add_parser("schedule", help="upcoming runs of every deployment")
    schedule.add_argument("--start", help="ISO date or date-time (default: now), Stockholm")
    schedule.add_argument("--days", type=int, default=7, help="span in days (default 7)")
    schedule.add_argument("--json", action="store_true", help="print a JSON list")
    schedule.set_defaults(handler=cmd_schedule)

    policy = sub.add_parser("policy", help="how an alert is routed at a Stockholm time")
    policy.add_argument("--at", help="ISO date-time (default: now), Stockholm if no offset")
    policy.add_argument("--severity", required=True, help="critical, high, medium or low")
    policy.add_argument("--json", action="store_true", help="print one JSON object")
    policy.set_defaults(handler=cmd_policy)

    config = sub.add_parser("config", help="the saved configuration (Prefect blocks)")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    sync = config_sub.add_parser("sync", help="save the environment into the blocks")
    sync.add_argument("--json", action="store_true", help="print one JSON object")
    sync.set_defaults(handler=cmd_config_sync)

    pos = sub.add_parser("pos", help="the POS providers as the health sweeps left them")
    pos_sub = pos.add_subparsers(dest="pos_command", required=True)
    pos_status = pos_sub.add_parser("status", help="state, last check, uptime per provider")
    pos_status.add_argument("--json", action="store_true", help="print one JSON object")
    pos_status.set_defaults(handler=cmd_pos_status)

    dr = sub.add_parser("dr", help="disaster recovery runs and drills")
    dr_sub = dr.add_subparsers(dest="dr_command", required=True)
    dr_history = dr_sub.add_parser("history", help="the RTO and RPO of every DR run and drill")
    dr_history.add_argument("--json", action="store_true", help="print one JSON object")
    dr_history.set_defaults(handler=cmd_dr_history)

    calendar = sub.add_parser("calendar", help="Swedish holidays and maintenance windows")
    calendar.add_argument("year", type=int)
    calendar.add_argument("--json", action="store_true", help="print a JSON object")
    calendar.set_defaults(handler=cmd_calendar)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `feedback-ops` console script."""
    args = build_parser().parse_args(argv)
    # Piped into `head`, stop quietly like other command-line tools.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    _prepare_environment()
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
