"""relay.toml keys: refusing the ones nobody reads (a typo must not silently fall back
to a default), and printing the effective configuration (`config check`).

The known keys are not listed here: they are the ones `relay.core.config.load_config`
asks for. The loader reads the file through `Tracked`, which records every section
and key asked for (present or not, since a default is asked for too); whatever the file
holds beyond that is unknown. A key another module adds to the loader is thus known
the moment it is read, with no second list to keep in step.
"""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any


class Tracked(dict):  # type: ignore[type-arg]
    """A TOML table that records the keys looked up in it (sections hold Tracked tables)."""

    def __init__(self, data: dict[str, Any], nested: bool = True):
        super().__init__({k: Tracked(v, nested=False) if nested and isinstance(v, dict) else v
                          for k, v in data.items()})
        self.asked: set[str] = set()
        self._nested = nested
        self._absent: dict[str, Tracked] = {}

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        if self._nested and not super().__contains__(key):
            # an absent section asked for: record its keys too, for suggestions
            placeholder = Tracked({}, nested=False)
            self._absent[key] = placeholder
            return placeholder if default == {} else default
        return super().get(key, default)

    def known(self) -> dict[str, set[str]]:
        """Section -> the keys the loader asked for in it."""
        out: dict[str, set[str]] = {}
        for name in self.asked:
            table = dict.get(self, name)
            if table is None:
                table = self._absent.get(name)
            out[name] = set(table.asked) if isinstance(table, Tracked) else set()
        return out


def unknown_key_error(file_name: str, data: Tracked) -> str | None:
    """The first key or section of the file the loader never asked for, as the one-line
    error `relay.toml: [imap] max_sesions_per_ip: unknown key (did you mean ...?)`."""
    known = data.known()
    for section in sorted(dict.keys(data)):
        if section not in known:
            hint = difflib.get_close_matches(section, sorted(known), n=1)
            more = f" (did you mean [{hint[0]}]?)" if hint else ""
            return f"{file_name}: [{section}]: unknown section{more}"
        table = dict.__getitem__(data, section)
        if not isinstance(table, dict):
            continue  # the loader already refused it ("must be a table")
        for key in sorted(dict.keys(table)):
            if key in known[section]:
                continue
            hint = difflib.get_close_matches(key, sorted(known[section]), n=1)
            if hint:
                more = f" (did you mean {hint[0]}?)"
            else:  # a key put in the wrong section
                elsewhere = sorted(s for s, keys in known.items() if key in keys)
                more = f" (did you mean [{elsewhere[0]}] {key}?)" if elsewhere else ""
            return f"{file_name}: [{section}] {key}: unknown key{more}"
    return None


def _elide_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def _plain(value: Any) -> Any:
    if hasattr(value, "host") and hasattr(value, "port"):  # Listen
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.repr}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):  # [cps] file identifiers and AID, as written in relay.toml
        return value.hex().upper()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def effective(config: Any) -> dict[str, Any]:
    """The loaded configuration as plain values (defaults applied, paths resolved),
    secrets elided: what `config check` prints. The key files are named, never read
    (their paths are what an operator checks); a password in the store URL
    (PostgreSQL) is the one secret the file itself may hold."""
    out = _plain(config)
    out["store_url"] = _elide_url(config.store_url)
    return out
