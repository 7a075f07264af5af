"""gatewayctl audit query|queries|verify|redrive-dlq|replay-failures: question and check the audit trail.

The same SQL runs in both targets: Athena over the Glue table in the cloud, DuckDB over the same
objects in the local stack (table `audit_events`, partitions tenant and dt as columns).
"""

from __future__ import annotations

from typing import Any

from gatewayctl.options import iso_date
from gatewayctl.output import CommandError, emit


def register(sub: Any) -> None:
    group = sub.add_parser("audit", help="query and verify the audit trail").add_subparsers(
        dest="audit_command", metavar="ACTION", required=True
    )
    query = group.add_parser("query", help="run SQL (or --named NAME) against table audit_events")
    query.add_argument("sql", nargs="?", help='e.g. "SELECT tenant, count(*) FROM audit_events GROUP BY 1"')
    query.add_argument(
        "--named", metavar="NAME", help="one of the stack's named queries (see `audit queries`)"
    )
    query.add_argument(
        "--param", action="append", default=[], help="a value for each `?`, in order (repeatable)"
    )
    query.set_defaults(func=_query)

    queries = group.add_parser("queries", help="list the named queries")
    queries.set_defaults(func=_queries)

    verify = group.add_parser(
        "verify",
        help="every request in the access logs has its audit records, and every audit object is locked; "
        "exits 1 when anything is missing or extra",
    )
    verify.add_argument("--from", dest="date_from", type=iso_date, required=True, help="YYYY-MM-DD (UTC)")
    verify.add_argument("--to", dest="date_to", type=iso_date, help="YYYY-MM-DD (UTC), default: --from")
    verify.set_defaults(func=_verify)

    redrive = group.add_parser("redrive-dlq", help="put dead-lettered audit records back on the audit stream")
    redrive.set_defaults(func=_redrive)

    replay = group.add_parser(
        "replay-failures",
        help="write again what the audit writers gave up on (the AuditWriterFailures queue), from the stream or the "
        "staged access log; exits 1 when anything is lost or failed",
    )
    replay.add_argument("--dry-run", action="store_true", help="read and report, write and delete nothing")
    replay.add_argument(
        "--forget-lost", action="store_true", help="delete the messages whose records are gone, after reporting them"
    )
    replay.set_defaults(func=_replay_failures)


def _query(args: Any) -> int:
    from gatewayctl import auditing, target
    from stacks.audit_queries import NAMED_QUERIES

    if bool(args.sql) == bool(args.named):
        raise CommandError("give either SQL or --named NAME")
    if args.named:
        if args.named not in NAMED_QUERIES:
            raise CommandError(f"no named query {args.named!r}; known: {', '.join(sorted(NAMED_QUERIES))}")
        sql = NAMED_QUERIES[args.named][1]
    else:
        sql = args.sql
    if sql.count("?") != len(args.param):
        raise CommandError(
            f"the query has {sql.count('?')} parameter(s) (?), {len(args.param)} --param given"
        )
    try:
        result = auditing.query_for(target.resolve(args))(sql, args.param)
    except auditing.AuditError as exc:
        raise CommandError(str(exc)) from None
    emit(args, result.dicts(), columns=result.columns)
    return 0


def _queries(args: Any) -> int:
    from stacks.audit_queries import NAMED_QUERIES

    rows = [{"name": name, "description": desc} for name, (desc, _) in sorted(NAMED_QUERIES.items())]
    emit(args, rows, columns=("name", "description"))
    return 0


def _verify(args: Any) -> int:
    from gatewayctl import auditing, target

    try:
        report = auditing.verify_target(target.resolve(args), args.date_from, args.date_to or args.date_from)
    except auditing.AuditError as exc:
        raise CommandError(str(exc)) from None
    data = report.to_dict()
    if getattr(args, "json", False):
        emit(args, data)
    else:
        summary = {
            k: data[k] for k in ("ok", "from", "to", "witnessed", "audited", "objects_checked", "duplicates")
        }
        emit(args, summary)
        for kind in ("missing", "incomplete", "unrequested", "extra", "unlocked"):
            if data[kind]:
                print(f"\n{kind} ({len(data[kind])}):")
                emit(args, data[kind])
    return 0 if report.ok else 1


def _redrive(args: Any) -> int:
    from gatewayctl import auditing, target

    emit(args, {"redriven": auditing.redrive_dlq(target.resolve(args))})
    return 0


def _replay_failures(args: Any) -> int:
    from gatewayctl import auditing, target
    from gatewayctl.auditing import failures

    rows = auditing.replay_failures(target.resolve(args), forget_lost=args.forget_lost, dry_run=args.dry_run)
    emit(args, rows, columns=("message_id", "kind", "source", "outcome", "records", "deleted", "detail"))
    return 0 if all(r["outcome"] == failures.REPLAYED for r in rows) else 1
