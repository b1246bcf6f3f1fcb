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

from relay.config import Config


class _Ctx:
    load: Callable[[argparse.Namespace], Config]
    usage_error: type[Exception] = Exception


ctx = _Ctx()


def cmd_config_check(args: argparse.Namespace) -> int:
    from relay.configkeys import effective

    config = ctx.load(args)  # unknown keys, wrong types, out-of-range values: exit 2
    print(json.dumps(effective(config), indent=2, sort_keys=True))
    return 0


def register(sub: Any, common: argparse.ArgumentParser, parser_class: type,
             load: Callable[[argparse.Namespace], Config], usage_error: type[Exception]) -> None:
    ctx.load, ctx.usage_error = load, usage_error
    c = sub.add_parser("config", help="the configuration file")
    csub = c.add_subparsers(dest="config_command", required=True, parser_class=parser_class)
    s = csub.add_parser("check", parents=[common],
                        help="validate relay.toml and print the effective configuration (secrets elided)")
    s.set_defaults(func=cmd_config_check)
