"""``binrelay``: the command line.

Exit codes (SPEC): 0 success, 2 usage or configuration error (one line naming
the file, key and problem), 1 runtime failure. Each command is a thin front
end over a use-case function.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from relay.cli import members as members_cli
from relay.cli import queue as queue_cli
from relay.cli.checks import run_checks
from relay.cli.classify import run_classify
from relay.cli.demo import DemoFolderInUse, run_demo
from relay.cli.status import status_command
from relay.config import Config, ConfigError, default_config_path, load_config
from relay.jobs.report import report_command
from relay.service.clock import SystemClock
from relay.service.daemon import Daemon
from relay.service.logsetup import LEVELS, configure_logging
from relay.service.runtime import Runtime, build_runtime
from rules import RuleFileError
from storage.db import has_table, make_engine, migrate, schema_state, session_factory
from storage.members import member_ward_map

log = logging.getLogger("binrelay.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="binrelay", description="Neighbourhood alert relay (BIN).")
    parser.add_argument("--config", type=Path, help="configuration file (default: $BINRELAY_CONFIG, then ./binrelay.toml)")
    parser.add_argument("--log-level", choices=LEVELS, default="info")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("init", help="create or migrate the database")
    run = commands.add_parser("run", help="the daemon")
    run.add_argument("--once", action="store_true", help="do all pending work and exit")
    check = commands.add_parser("check", help="validate configuration and rules, try IMAP and SMTP logins")
    check.add_argument("--unit", type=Path, metavar="FILE",
                       help="the systemd unit whose LoadCredential= sources to read (default: the installed "
                            "binrelay.service)")

    classify = commands.add_parser("classify", help="classify messages without storing them")
    classify.add_argument("files", nargs="+", type=Path, metavar="FILE.eml")
    classify.add_argument("--json", action="store_true", help="one JSON object per file, one per line")

    members = commands.add_parser("members", help="the member table").add_subparsers(dest="action", required=True)
    members.add_parser("import", help="add or update members from CSV", epilog=members_cli.CSV_FORMAT,
                       formatter_class=argparse.RawDescriptionHelpFormatter).add_argument(
        "file", type=Path, metavar="FILE.csv", help="members to add or update (format below)")
    listing = members.add_parser("list", help="list members")
    listing.add_argument("--ward")
    listing.add_argument("--json", action="store_true")
    for action, text in (("remove", "remove a member"), ("export", "all data on one member (privacy request)"),
                         ("erase", "erase one member's data (privacy request)")):
        members.add_parser(action, help=text).add_argument("email")

    queue = commands.add_parser("queue", help="the approval queue").add_subparsers(dest="action", required=True)
    queue.add_parser("list", help="pending items").add_argument("--json", action="store_true")
    queue.add_parser("show", help="one item").add_argument("id", type=int)
    queue.add_parser("approve", help="approve an item").add_argument("id", type=int)
    reject = queue.add_parser("reject", help="reject an item")
    reject.add_argument("id", type=int)
    reject.add_argument("--reason")

    report = commands.add_parser("report", help="the statistics of a month")
    report.add_argument("--month", metavar="YYYY-MM")
    report.add_argument("--send", action="store_true", help="mail it to the user group with a chart")

    status = commands.add_parser("status", help="what needs attention: mailboxes, queue, deliveries, workers "
                                               "(exit 1 when something does)")
    status.add_argument("--json", action="store_true", help="one JSON object")

    demo = commands.add_parser("demo", help="a self-contained run of the whole flow on loopback")
    demo.add_argument("--keep", type=Path, help="keep the demo's files in this folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    handler = HANDLERS[args.command]
    try:
        return handler(args)
    except (ConfigError, RuleFileError) as exc:
        # A broken configuration or rule file: one line naming the file, the key and the problem.
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"binrelay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NoDatabase as exc:
        print(f"binrelay: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as exc:
        log.debug("runtime failure", exc_info=True)
        print(f"binrelay: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


# -- helpers ---------------------------------------------------------------

def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config or default_config_path())


class NoDatabase(Exception):
    """A command that only reads found no current database: it creates nothing (exit 1)."""


def _runtime(args: argparse.Namespace, *, writes: bool = True) -> Runtime:
    """The runtime for a command. One that changes things brings the schema up to date first;
    one that only reads (``writes=False``) changes nothing on disk and says what is missing."""
    config = _config(args)
    if not writes:
        state = schema_state(config.database.url)
        if not state.current:
            raise NoDatabase(f"database {_safe_url(config.database.url)}: {state.describe()} "
                             "(`binrelay init` or the service's first start creates it; this command only reads)")
    engine = make_engine(config.database.url)
    if writes:
        migrate(engine)
    return build_runtime(config, engine, SystemClock())


def _operator() -> str:
    return f"operator:{getpass.getuser()}"


# -- commands ----------------------------------------------------------------

def cmd_init(args: argparse.Namespace) -> int:
    config = _config(args)
    migrate(make_engine(config.database.url))
    print(f"database ready: {_safe_url(config.database.url)}")
    return EXIT_OK


def _safe_url(url: str) -> str:
    return url.split("?", 1)[0]


def cmd_run(args: argparse.Namespace) -> int:
    daemon = Daemon(args.config or default_config_path())
    daemon.build()
    if args.once:
        try:
            result = daemon.run_once()
        finally:
            daemon.close()
        print(f"stored {result.stored}, routed {result.routed}, failed {result.failed}, sent {result.sent}")
        for problem in result.problems:
            print(f"binrelay run --once: {problem}", file=sys.stderr)
        return EXIT_FAILURE if result.problems else EXIT_OK
    try:
        daemon.run_forever()
    finally:
        daemon.close()
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    if args.unit is not None and not args.unit.is_file():
        raise UsageError(f"--unit: {args.unit} is not a file")
    return run_checks(_config(args), sys.stdout, args.unit)


def cmd_classify(args: argparse.Namespace) -> int:
    config = _config(args)
    return run_classify(config, args.files, args.json, _member_lookup(config))


def _member_lookup(config: Config) -> Callable[[str], str | None]:
    """The member table, when the database exists; classification works without it."""
    url = config.database.url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return lambda _address: None
    engine = make_engine(url)
    if not has_table(engine, "members"):
        return lambda _address: None
    with session_factory(engine)() as session:
        wards = member_ward_map(session)
    return lambda address: wards.get(address.lower())


def cmd_members(args: argparse.Namespace) -> int:
    rt = _runtime(args, writes=args.action in ("import", "remove", "erase"))
    out, err = sys.stdout, sys.stderr
    if args.action == "import":
        return members_cli.members_import(rt, args.file, out, err)
    if args.action == "list":
        return members_cli.members_list(rt, args.ward, args.json, out)
    action = {"remove": members_cli.members_remove, "export": members_cli.members_export,
              "erase": members_cli.members_erase}[args.action]
    return action(rt, args.email, out, err)


def cmd_queue(args: argparse.Namespace) -> int:
    rt = _runtime(args, writes=args.action in ("approve", "reject"))
    if args.action == "list":
        return queue_cli.queue_list(rt, args.json)
    if args.action == "show":
        return queue_cli.queue_show(rt, args.id)
    if args.action == "approve":
        return queue_cli.queue_approve(rt, args.id, _operator())
    return queue_cli.queue_reject(rt, args.id, args.reason, _operator())


def cmd_report(args: argparse.Namespace) -> int:
    if args.month and not _is_month(args.month):
        raise UsageError(f"--month: {args.month!r} is not YYYY-MM")
    return report_command(_runtime(args, writes=args.send), args.month, args.send, sys.stdout, sys.stderr)


def cmd_status(args: argparse.Namespace) -> int:
    return status_command(_runtime(args, writes=False), args.json)


def _is_month(value: str) -> bool:
    year, _, month = value.partition("-")
    return len(year) == 4 and year.isdigit() and month.isdigit() and 1 <= int(month) <= 12 and len(month) == 2


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        return run_demo(keep=args.keep, out=sys.stdout)
    except DemoFolderInUse as error:
        raise UsageError(str(error)) from None


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "init": cmd_init,
    "run": cmd_run,
    "check": cmd_check,
    "classify": cmd_classify,
    "members": cmd_members,
    "queue": cmd_queue,
    "report": cmd_report,
    "status": cmd_status,
    "demo": cmd_demo,
}


if __name__ == "__main__":
    sys.exit(main())
