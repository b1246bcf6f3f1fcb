"""The patient's controls over health professionals, on the command line (issue 18 §5):
`pro list|allow|block|unblock`, `dossier hide|unhide`, `mailbox emergency|attending`.
(`pro dossier`, the card client, lives elsewhere.) relay/cli.py dispatches here."""
from __future__ import annotations

import argparse
import json
from types import ModuleType
from typing import Any

from mailbox_store.store import Store
from policy.dossier_access import IdNatError, parse_idnat

# relay/cli.py as it runs: `python -m relay.cli` runs it as __main__, a second module
# beside relay.cli, whose UsageError main() would not catch. add_parsers receives it.
cli: ModuleType


def _ins(text: str) -> str:
    return cli._ins(text)  # type: ignore[no-any-return]


def _doc_id(text: str) -> str:
    return cli._doc_id(text)  # type: ignore[no-any-return]


def _load(args: argparse.Namespace) -> Any:
    return cli._load(args)


def _with_store(config: Any, fn: Any) -> Any:
    return cli._with_store(config, fn)


def _idnat(text: str) -> str:
    try:
        return parse_idnat(text)
    except IdNatError as e:
        raise cli.UsageError(f"IDNAT: {e}") from None


def _when(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def cmd_pro(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    config = _load(args)
    if args.pro_command == "list":
        async def listing(s: Store) -> Any:
            mailbox = await s.require_mailbox(ins)
            return await s.pro_list(mailbox), await s.pro_rules(mailbox)

        records, rules = _with_store(config, listing)
        if args.json:
            print(json.dumps({
                "attending": rules.attending, "emergency": rules.emergency_enabled,
                "authorised": [{"idnat": r.idnat, "name": r.name, "since": _when(r.allowed_at), "by": r.allowed_by}
                               for r in records if r.allowed_at is not None and r.blocked_at is None],
                "blocked": [{"idnat": r.idnat, "name": r.name, "since": _when(r.blocked_at)}
                            for r in records if r.blocked_at is not None]}, indent=2, ensure_ascii=False))
        else:
            for r in records:
                if r.blocked_at is not None:
                    print(f"{r.idnat}  blocked     {r.blocked_at:%Y-%m-%d %H:%M}Z  {r.name}")
                elif r.allowed_at is not None:
                    print(f"{r.idnat}  authorised  {r.allowed_at:%Y-%m-%d %H:%M}Z  {r.name}")
            print(f"attending doctor: {rules.attending or 'none'}; emergency access: "
                  f"{'on' if rules.emergency_enabled else 'off'}")
        return 0
    idnat = _idnat(args.idnat)

    async def change(s: Store) -> None:
        await s.pro_set(await s.require_mailbox(ins), idnat, args.pro_command, actor="admin", source="cli")

    _with_store(config, change)
    done = {"allow": "authorised", "block": "blocked", "unblock": "unblocked"}[args.pro_command]
    print(f"professional {idnat} {done} for {ins}")
    return 0


def cmd_dossier_hide(args: argparse.Namespace) -> int:
    ins, doc_id = _ins(args.ins), _doc_id(args.doc_id)
    config = _load(args)
    hide = args.dossier_command == "hide"

    async def change(s: Store) -> None:
        await s.set_document_hidden(await s.require_mailbox(ins), doc_id, hide, actor="admin", source="cli")

    _with_store(config, change)
    print(f"document {doc_id} {'hidden' if hide else 'shown again'} in the dossier of {ins}")
    return 0


def cmd_mailbox_emergency(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    if args.switch not in ("on", "off"):
        raise cli.UsageError(f"on|off: expected on or off, got {args.switch!r}")
    config = _load(args)
    on = args.switch == "on"

    async def change(s: Store) -> None:
        await s.set_pro_settings(await s.require_mailbox(ins), "admin", "cli", emergency=on)

    _with_store(config, change)
    print(f"emergency access {'on' if on else 'off'} for {ins}")
    return 0


def cmd_mailbox_attending(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    clear = args.idnat.strip().lower() == "none"
    idnat = None if clear else _idnat(args.idnat)
    config = _load(args)

    async def change(s: Store) -> None:
        await s.set_pro_settings(await s.require_mailbox(ins), "admin", "cli", attending=idnat,
                                 clear_attending=clear)

    _with_store(config, change)
    print(f"attending doctor of {ins}: {idnat or 'none'}")
    return 0


def add_parsers(module: ModuleType, sub: Any, msub: Any, dsub: Any, common: argparse.ArgumentParser) -> Any:
    """The subcommands, under `mssante-relay` (sub), `mailbox` (msub), `dossier` (dsub);
    returns the `pro` subparsers, where the card client adds `pro dossier`."""
    global cli
    cli = module
    parser_class = module._Parser
    pro = sub.add_parser("pro", help="health professionals' access to a patient's dossier")
    psub = pro.add_subparsers(dest="pro_command", required=True, parser_class=parser_class)
    s = psub.add_parser("list", parents=[common], help="authorised and blocked professionals, with dates")
    s.add_argument("ins")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_pro)
    for action, helptext in (("allow", "authorise a professional (IdNat_PS or RPPS)"),
                             ("block", "block a professional: nothing visible, at their next request"),
                             ("unblock", "lift a block")):
        s = psub.add_parser(action, parents=[common], help=helptext)
        s.add_argument("ins")
        s.add_argument("idnat", metavar="IDNAT")
        s.set_defaults(func=cmd_pro)
    for action, helptext in (("hide", "hide a document from professionals (but its author and the attending doctor)"),
                             ("unhide", "show a hidden document again")):
        s = dsub.add_parser(action, parents=[common], help=helptext)
        s.add_argument("ins")
        s.add_argument("doc_id", metavar="DOC_ID")
        s.set_defaults(func=cmd_dossier_hide)
    s = msub.add_parser("emergency", parents=[common], help="emergency access by professionals: on (default) or off")
    s.add_argument("ins")
    s.add_argument("switch", metavar="on|off")
    s.set_defaults(func=cmd_mailbox_emergency)
    s = msub.add_parser("attending", parents=[common], help="the patient's attending doctor (IdNat_PS, RPPS or none)")
    s.add_argument("ins")
    s.add_argument("idnat", metavar="IDNAT")
    s.set_defaults(func=cmd_mailbox_attending)
    return psub
