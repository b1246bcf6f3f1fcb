"""relay.toml typos are refused (issue 16 §4): unknown sections and keys, with a suggestion,
derived from the keys the loader reads (relay/core/configkeys.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from relay.core.config import ConfigError, load_config
from relay.core.configkeys import Tracked, effective, unknown_key_error


@pytest.fixture(scope="module")
def template(dev_instance: Path) -> str:
    return (dev_instance / "relay.toml").read_text(encoding="utf-8")


def refused(tmp_path: Path, text: str) -> str:
    p = tmp_path / "relay.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    return str(e.value)


def test_misspelt_key_is_refused_with_a_suggestion(tmp_path: Path, template: str) -> None:
    text = template.replace("max_sessions_per_account = 20", "max_sesions_per_account = 20")
    assert refused(tmp_path, text) == \
        "relay.toml: [imap] max_sesions_per_account: unknown key (did you mean max_sessions_per_account?)"


def test_the_issue_example(tmp_path: Path, template: str) -> None:
    text = template.replace("[imap]\n", "[imap]\nmax_sesions_per_ip = 3\n")
    assert refused(tmp_path, text) == \
        "relay.toml: [imap] max_sesions_per_ip: unknown key (did you mean max_sessions_per_ip?)"


def test_key_in_the_wrong_section_names_the_right_one(tmp_path: Path, template: str) -> None:
    text = template.replace("[imap]\n", "[imap]\nshutdown_grace = 3\n")
    assert refused(tmp_path, text) == "relay.toml: [imap] shutdown_grace: unknown key (did you mean [mx] shutdown_grace?)"


def test_unknown_section(tmp_path: Path, template: str) -> None:
    assert refused(tmp_path, template.replace("[attachments]", "[attachment]")) == \
        "relay.toml: [attachment]: unknown section (did you mean [attachments]?)"
    assert refused(tmp_path, template + "\n[metrics]\nport = 1\n") == "relay.toml: [metrics]: unknown section"


def test_unknown_key_in_a_section_the_file_omits(tmp_path: Path) -> None:
    # a minimal file: only the misspelt key; suggestions come from what the loader asked
    assert refused(tmp_path, "[log]\nlevl = \"info\"\n") == \
        "relay.toml: [log] levl: unknown key (did you mean level?)"


def test_former_section_checks_use_the_same_form(tmp_path: Path, template: str) -> None:
    assert refused(tmp_path, template.replace("max_parts = 100", "max_part = 100")) == \
        "relay.toml: [attachments] max_part: unknown key (did you mean max_parts?)"
    assert refused(tmp_path, template.replace("hash_threads = 2", "hash_thread = 2")) == \
        "relay.toml: [auth] hash_thread: unknown key (did you mean hash_threads?)"


def test_wrong_types_and_ranges_keep_their_field_errors(tmp_path: Path, template: str) -> None:
    assert refused(tmp_path, template.replace("max_line = 65536", 'max_line = "big"')) == \
        "imap.max_line: expected int, got 'big'"
    assert refused(tmp_path, template.replace("max_recipients = 100", "max_recipients = 0")) == \
        "mx.max_recipients: must be > 0, got 0"
    assert refused(tmp_path, template.replace("[mx]\n", "[mx]\nx = 1\n[mx2]\n").replace("[mx2]\n", "")) \
        .startswith("relay.toml: [mx] x: unknown key")


def test_a_key_the_loader_reads_is_known_without_a_list() -> None:
    data = Tracked({"new": {"feature": 1, "featur": 2}})
    data.get("new", {}).get("feature")  # what a loader another helper adds would do
    assert unknown_key_error("relay.toml", data) == "relay.toml: [new] featur: unknown key (did you mean feature?)"
    data.get("new", {}).get("featur")
    assert unknown_key_error("relay.toml", data) is None


def test_the_template_and_example_load(dev_instance: Path) -> None:
    load_config(dev_instance / "relay.toml")
    example = Path(__file__).resolve().parents[2] / "config" / "relay.example.toml"
    load_config(example)


def test_a_store_password_in_the_url_is_refused_without_being_echoed(tmp_path: Path, template: str) -> None:
    # issue 14: the password lives in store.password_file or PGPASSFILE, never in relay.toml
    text = template.replace('url = "sqlite+aiosqlite:///relay.db"',
                            'url = "postgresql+asyncpg://relay:s3cret@db.example/relay"')
    p = tmp_path / "relay.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=r"^store\.url: a password does not belong in the URL") as e:
        load_config(p)
    assert "s3cret" not in str(e.value)
    p.write_text(template)
    out = effective(load_config(p))
    assert out["imap_max_sessions_per_ip"] == 50 and out["mx_listen"] == "127.0.0.1:2525"
    assert "raw" not in out
