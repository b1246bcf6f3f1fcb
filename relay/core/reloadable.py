"""What SIGHUP may change in a running daemon, and what needs a restart.

RELOADABLE names each relay.toml key a reload applies and the Config field(s) it
feeds; README.md's "reloadable keys" table is this one. Each of these fields is read
where it is used (per connection, per command, per message), so swapping
`Runtime.config` applies it to new sessions, and to established ones at their next
command where the value is read per command. Every other key that changed is named in
one `reload.needs_restart` event and keeps its running value: listen addresses, names,
the store, the IMAP line limit (the stream reader's buffer is sized at start), the
authentication throttle, the webmail and delivery settings.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from policy.attachments import AttachmentLimits

_MX_HEADERS = ("max_header_field_bytes", "max_header_fields", "max_header_bytes")

RELOADABLE: dict[str, str] = {
    "tls.profile": "tls_profile",
    "tls.cert": "tls_cert",
    "tls.key": "tls_key",
    "tls.trust_anchors": "trust_anchors",
    "tls.crls": "crls",
    "trust_list.path": "trust_list",
    "trust_list.require_digest": "trust_list_require_digest",
    "trust_list.max_age_days": "trust_list_max_age_days",
    "trust_list.url": "trust_list_url",  # read by `trustlist update`, not the daemon
    "trust_list.fetch_ca": "trust_list_fetch_ca",
    "mx.max_message_size": "max_message_size",
    "mx.max_recipients": "max_recipients",
    "mx.max_sessions_per_ip": "max_sessions_per_ip",
    "mx.timeout": "mx_timeout",
    "mx.data_timeout": "mx_data_timeout",
    "mx.shutdown_grace": "shutdown_grace",
    **{f"mx.{k}": "header_limits" for k in _MX_HEADERS},
    **{f"attachments.{k}": "attachments" for k in AttachmentLimits.__dataclass_fields__},
    "imap.max_literal": "imap_max_literal",
    "imap.idle_timeout": "imap_idle_timeout",
    "imap.max_sessions_per_ip": "imap_max_sessions_per_ip",
    "imap.max_sessions_per_account": "imap_max_sessions_per_account",
    "imap.command_rate": "imap_command_rate",
    "imap.command_burst": "imap_command_burst",
    "imap.command_timeout": "imap_command_timeout",
    "imap.literal_timeout": "imap_literal_timeout",
    "store.min_free_bytes": "store_min_free_bytes",
    "log.level": "log_level",
}


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`section.key` of every key added, removed or changed between two parsed files
    (a whole section when it is not a table)."""
    out = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section, {}), new.get(section, {})
        if not (isinstance(a, dict) and isinstance(b, dict)):
            if a != b:
                out.append(section)
            continue
        out.extend(f"{section}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
    return out


def needs_restart(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [k for k in changed_keys(old, new) if k not in RELOADABLE]


def apply(running: Any, loaded: Any) -> Any:
    """The running Config with every reloadable field taken from the loaded one. Its
    `raw` stays the file read at start, so a key that needs a restart is named at every
    reload until the restart."""
    return dataclasses.replace(running, **{f: getattr(loaded, f) for f in set(RELOADABLE.values())})
