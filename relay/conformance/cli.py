"""`mssante-relay conformance run|check`: arguments, defaults from the instance
configuration, output and exit status (0 only when nothing failed)."""
from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys
from pathlib import Path
from typing import Any

from policy.attachments import AttachmentLimits
from policy.ins import InsError, parse_ins
from relay.conformance import report
from relay.conformance.peer import HostPort, Target, scratch_dir
from relay.conformance.results import Outcome, exit_status

EXIT_USAGE = 2
DEFAULT_SENDER_LOCAL = "conformance"
DEV_CONFIG = Path("mssante-dev/relay.toml")


class _Usage(Exception):
    pass


def _hostport(field: str, text: str) -> HostPort:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _Usage(f"{field}: {text!r} is not HOST:PORT")
    return HostPort(host.strip("[]"), int(port))


def _ins(field: str, text: str) -> str:
    try:
        return parse_ins(text.strip()).value
    except InsError as e:
        raise _Usage(f"{field}: {e}") from None


def _address(field: str, text: str) -> str:
    local, at, domain = text.rpartition("@")
    if not at or not local or "." not in domain or any(c in text for c in " <>\r\n"):
        raise _Usage(f"{field}: {text!r} is not an e-mail address")
    return text


def _url(field: str, text: str) -> str:
    if not re.fullmatch(r"https://[A-Za-z0-9.\-\[\]:]+(?:/[^\s]*)?", text):
        raise _Usage(f"{field}: {text!r} is not an https:// URL")
    return text


def _file(field: str, text: str) -> str:
    if not Path(text).is_file():
        raise _Usage(f"{field}: {text}: no such file")
    return text


def _target(args: argparse.Namespace) -> Target:
    """Explicit flags win; the rest comes from the instance configuration (our own
    deployment on loopback): its ports, pki/operator.pem, pki/ca.pem, the demo patient."""
    # the flags given are checked first: an error names the flag the tester typed
    mx_flag = _hostport("--mx", args.mx) if args.mx else None
    for flag, value in (("--cert", args.cert), ("--key", args.key), ("--ca", args.ca)):
        if value:
            _file(flag, value)
    for flag, value in (("--sender", args.sender), ("--second-sender", args.second_sender)):
        if value:
            _address(flag, value)
    for flag, value in (("--patient", args.patient), ("--closed-patient", args.closed_patient)):
        if value:
            _ins(flag, value)
    config: Any = None
    if args.config or not all((args.mx, args.cert, args.key, args.ca, args.sender, args.patient)):
        from relay.core.config import ENV_CONFIG, ConfigError, config_path, load_config
        chosen = args.config
        if chosen is None and not os.environ.get(ENV_CONFIG) and DEV_CONFIG.is_file():
            chosen = str(DEV_CONFIG)  # the instance `mssante-relay serve` runs without --config
        try:
            config = load_config(config_path(chosen))
        except ConfigError as e:
            raise _Usage(f"{e} (or give --mx, --cert, --key, --ca, --sender and --patient)") from None
    base = config.base_dir if config is not None else Path(".")

    def cfg(listen: Any) -> HostPort | None:
        return HostPort(listen.host, listen.port) if listen is not None and listen.port else None

    mx = mx_flag or cfg(config.mx_listen)
    if mx is None:
        raise _Usage("--mx: the configuration listens on port 0; give --mx HOST:PORT")
    imap = _hostport("--imap", args.imap) if args.imap else (cfg(config.imap_listen_tls) if config else None)
    submission = _hostport("--submission", args.submission) if args.submission else \
        (cfg(config.submission_listen) if config else None)
    password = None
    if args.patient_password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise _Usage("--patient-password-stdin: standard input held no password")
    elif config is not None and not args.patient and (base / "demo-password").is_file():
        password = (base / "demo-password").read_text(encoding="utf-8").strip()
    from relay.ops.instance import DEMO_INS
    domain = config.domain if config is not None else "patient.mssante.fr"
    return Target(
        mx=mx, imap=imap, submission=submission,
        cert=_file("--cert", args.cert or str(base / "pki/operator.pem")),
        key=_file("--key", args.key or str(base / "pki/operator.key")),
        ca=_file("--ca", args.ca or str(base / "pki/ca.pem")),
        sender=_address("--sender", args.sender or f"{DEFAULT_SENDER_LOCAL}@test-operator.mssante.fr"),
        patient=_ins("--patient", args.patient or DEMO_INS),
        password=password, domain=domain,
        second_sender=_address("--second-sender", args.second_sender) if args.second_sender else None,
        closed_patient=_ins("--closed-patient", args.closed_patient) if args.closed_patient else None,
        web=_url("--web", args.web) if args.web else (f"https://{config.web.listen.host}:{config.web.listen.port}"
                         if config is not None and config.web is not None and config.web.listen.port else None),
        wait=args.wait, quiet_wait=args.quiet_wait)


def _emit(outcomes: list[Outcome], args: argparse.Namespace, suite: str, noun: str) -> int:
    if args.junit:
        try:
            report.write_junit(Path(args.junit), outcomes, suite)
        except OSError as e:
            raise _Usage(f"--junit: cannot write {args.junit}: {e.strerror or e}") from None
    if args.json:
        print(report.as_json(outcomes))
    else:
        print(report.summary(outcomes, noun))
    return exit_status(outcomes)


def cmd_run(args: argparse.Namespace) -> int:
    from relay.conformance.listener import Listener
    from relay.conformance.scenarios import CATALOGUE, Context, run_one

    try:
        target = _target(args)
        chosen = [s for s in CATALOGUE if not args.only or any(fnmatch.fnmatch(s.name, p) for p in args.only)]
        if not chosen:
            raise _Usage(f"--only: no scenario matches {' '.join(args.only)}")
        listener = None
        if args.listen:
            where = _hostport("--listen", args.listen)
            try:
                listener = Listener(where.host, where.port, target.cert, target.key).start()
            except (OSError, RuntimeError, TimeoutError) as e:
                raise _Usage(f"--listen: cannot listen on {where}: {type(e).__name__}: {e}") from None
        outcomes: list[Outcome] = []
        printer = report.Printer(len(chosen), quiet=args.json)
        try:
            with scratch_dir() as scratch:
                ctx = Context(target, listener, Path(scratch))
                for scenario in chosen:
                    printer.starting(scenario.name)
                    outcome = run_one(scenario, ctx, str(target.mx))
                    outcomes.append(outcome)
                    printer.done(outcome)
        finally:
            printer.close()
            if listener is not None:
                listener.stop()
        return _emit(outcomes, args, "conformance.run", "scenarios")
    except _Usage as e:
        sys.stderr.write(f"mssante-relay: error: {e}\n")
        return EXIT_USAGE


def cmd_check(args: argparse.Namespace) -> int:
    from relay.conformance.check import DEFAULT_MAX_SIZE, check_eml

    try:
        limits, max_size, domain = AttachmentLimits(), DEFAULT_MAX_SIZE, "patient.mssante.fr"
        if args.config:
            from relay.core.config import ConfigError, load_config
            try:
                config = load_config(Path(args.config))
            except ConfigError as e:
                raise _Usage(str(e)) from None
            limits, max_size, domain = config.attachments, config.max_message_size, config.domain
        outcomes: list[Outcome] = []
        printer = report.Printer(len(args.files), quiet=args.json)
        try:
            for name in args.files:
                try:
                    raw = Path(name).read_bytes()
                except OSError as e:
                    raise _Usage(f"{name}: {e.strerror or e}") from None
                if not args.json and len(args.files) > 1:
                    print(f"{name}:")
                for o in check_eml(raw, limits, max_size, domain):
                    o.group = name
                    outcomes.append(o)
                    printer.done(o)
        finally:
            printer.close()
        return _emit(outcomes, args, "conformance.check", "checks")
    except _Usage as e:
        sys.stderr.write(f"mssante-relay: error: {e}\n")
        return EXIT_USAGE


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """The `conformance` command group: one dispatch entry in relay/cli.py."""
    c = sub.add_parser("conformance", help="conformance kit: test a deployment, or check messages")
    csub = c.add_subparsers(dest="conformance_command", required=True, parser_class=type(c))
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--junit", metavar="FILE", help="write JUnit XML (one testcase per scenario or check)")
    out.add_argument("--json", action="store_true", help="JSON on standard output instead of lines")

    s = csub.add_parser("run", parents=[common, out], help="run the scenario catalogue against a deployment")
    s.add_argument("--mx", metavar="HOST:PORT", help="the deployment's MX (default: mx.listen of the config)")
    s.add_argument("--imap", metavar="HOST:PORT", help="its IMAP, implicit TLS (default: imap.listen_tls)")
    s.add_argument("--submission", metavar="HOST:PORT", help="its submission, STARTTLS (default: submission.listen)")
    s.add_argument("--cert", metavar="FILE", help="the kit's client certificate (PEM; default pki/operator.pem)")
    s.add_argument("--key", metavar="FILE", help="its key (default pki/operator.key)")
    s.add_argument("--ca", metavar="FILE", help="the CA that signs the deployment's certificate (default pki/ca.pem)")
    s.add_argument("--sender", metavar="ADDR", help="the professional address the kit writes as "
                   "(its domain on the trust list with --cert's subject)")
    s.add_argument("--second-sender", metavar="ADDR", help="a second professional address")
    s.add_argument("--patient", metavar="INS", help="an active patient of the deployment (default: the demo patient)")
    s.add_argument("--patient-password-stdin", action="store_true", help="read the patient's password from stdin")
    s.add_argument("--closed-patient", metavar="INS", help="an opposed or closed mailbox of the deployment")
    s.add_argument("--web", metavar="URL", help="the patients' webmail, whose dossier listing shows filed documents "
                   "(default: web.listen)")
    s.add_argument("--listen", metavar="HOST:PORT", help="receive the deployment's replies here (STARTTLS, --cert)")
    s.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for what must come back (default 60)")
    s.add_argument("--quiet-wait", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for what must not come back (default 10)")
    s.add_argument("--only", action="append", metavar="PATTERN", help="run only scenarios matching (fnmatch)")
    s.set_defaults(func=cmd_run)

    s = csub.add_parser("check", parents=[common, out], help="check messages as a professional's software sends them")
    s.add_argument("files", nargs="+", metavar="FILE.eml")
    s.set_defaults(func=cmd_check)
