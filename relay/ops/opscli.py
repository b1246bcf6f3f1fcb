"""Operator commands: `config check` and `trustlist update` (issue 16).

Registered into the main parser by relay.cli.build_parser, which hands over its config
loader and its UsageError (one line `mssante-relay: error: ...`, exit 2): this module
never imports relay.cli, which may be running as __main__ (`python -m relay.cli`).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from relay.core.config import Config


class _Ctx:
    load: Callable[[argparse.Namespace], Config]
    usage_error: type[Exception] = Exception


ctx = _Ctx()


def cmd_config_check(args: argparse.Namespace) -> int:
    from relay.core.configkeys import effective

    config = ctx.load(args)  # unknown keys, wrong types, out-of-range values: exit 2
    print(json.dumps(effective(config), indent=2, sort_keys=True))
    return 0


def cmd_trustlist_update(args: argparse.Namespace) -> int:
    """Exit 0: installed (or already current); 1: the update failed, the old list stays;
    2: bad usage or configuration."""
    import sys
    from pathlib import Path

    from relay.ops.trustlist_update import UpdateError, update

    config = ctx.load(args)
    try:
        done = update(config, url=args.url, file=Path(args.file) if args.file else None,
                      reload=not args.no_reload)
    except UpdateError as e:
        sys.stderr.write(f"mssante-relay: error: trustlist update: {e} (the previous list is kept)\n")
        return 1
    digest = "digest checked" if done.digest_checked else "no digest published"
    if not done.changed:
        print(f"trust list unchanged ({done.domains} domains, sha256 {done.sha256}, {digest})")
        return 0
    print(f"trust list installed: {done.path} ({done.domains} domains, {done.entries} entries, "
          f"sha256 {done.sha256}, {digest})")
    if args.no_reload:
        print("daemon not signalled (--no-reload)")
    elif done.reloaded_pid is not None:
        print(f"daemon (PID {done.reloaded_pid}) asked to reload (SIGHUP)")
    else:
        print("no running daemon found: the list applies at its next start")
    return 0


def register(sub: Any, common: argparse.ArgumentParser, parser_class: type,
             load: Callable[[argparse.Namespace], Config], usage_error: type[Exception]) -> None:
    ctx.load, ctx.usage_error = load, usage_error
    c = sub.add_parser("config", help="the configuration file")
    csub = c.add_subparsers(dest="config_command", required=True, parser_class=parser_class)
    s = csub.add_parser("check", parents=[common],
                        help="validate relay.toml and print the effective configuration (secrets elided)")
    s.set_defaults(func=cmd_config_check)
    t = sub.add_parser("trustlist", help="the MSSante trust list (liste blanche)")
    tsub = t.add_subparsers(dest="trustlist_command", required=True, parser_class=parser_class)
    s = tsub.add_parser("update", parents=[common], help="fetch, check and install the published list, "
                        "then have the running daemon reload it")
    source = s.add_mutually_exclusive_group()
    source.add_argument("--url", metavar="URL", help="https:// URL of the list (default: trust_list.url)")
    source.add_argument("--file", metavar="FILE", help="a list already downloaded (FILE.sha256 checked if present)")
    s.add_argument("--no-reload", action="store_true", help="install only; do not signal the daemon")
    s.set_defaults(func=cmd_trustlist_update)
