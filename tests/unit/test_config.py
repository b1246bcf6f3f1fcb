"""relay/core/config.py: loading and validating relay.toml; every error names its field."""
from __future__ import annotations

from pathlib import Path

import pytest

from relay.core.config import ENV_CONFIG, ConfigError, Listen, config_path, load_config, parse_listen


@pytest.fixture(scope="module")
def template(dev_instance: Path) -> str:
    """relay.toml as `init` writes it."""
    return (dev_instance / "relay.toml").read_text(encoding="utf-8")


def edited(template: str, old: str, new: str) -> str:
    assert template.count(old) == 1, old
    return template.replace(old, new)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "relay.toml"
    p.write_text(text, encoding="utf-8")
    return p


# --- the template ---------------------------------------------------------------------------------

def test_template_written_by_init_loads(dev_instance: Path) -> None:
    cfg = load_config(dev_instance / "relay.toml")
    base = dev_instance.resolve()
    assert cfg.path == base / "relay.toml"
    assert cfg.base_dir == base
    assert cfg.hostname == "mx.patient.mssante.fr"
    assert cfg.domain == "patient.mssante.fr"
    assert cfg.mx_listen == Listen("127.0.0.1", 2525)
    assert str(cfg.mx_listen) == "127.0.0.1:2525"
    assert cfg.max_message_size == 26_214_400  # 25 MB, the MSSanté limit
    assert cfg.max_recipients == 100
    assert cfg.mx_timeout == 300.0 and cfg.shutdown_grace == 30.0
    assert cfg.tls_profile == "default"
    assert cfg.crls == ()
    assert cfg.trust_list_require_digest is False
    assert cfg.group_commit_max == 64
    assert cfg.log_level == "info"
    # every file the config names is one init wrote
    for p in (cfg.tls_cert, cfg.tls_key, cfg.trust_anchors, cfg.trust_list, cfg.master_key):
        assert p.is_file(), p
    assert cfg.store_url == f"sqlite+aiosqlite:///{base / 'relay.db'}"


def test_paths_relative_to_the_config_folder(tmp_path: Path, template: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "etc" / "relay"
    folder.mkdir(parents=True)
    write(folder, edited(template, "crls = []", 'crls = ["pki/ca.crl", "/var/lib/crl/igc.crl"]'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    cfg = load_config(Path("../etc/relay/relay.toml"))
    assert cfg.path == folder / "relay.toml"
    assert cfg.tls_cert == folder / "pki/server.pem"
    assert cfg.tls_key == folder / "pki/server.key"
    assert cfg.trust_anchors == folder / "pki/ca.pem"
    assert cfg.trust_list == folder / "trustlist.xml"
    assert cfg.master_key == folder / "keys/master.key"
    assert cfg.crls == (folder / "pki/ca.crl", Path("/var/lib/crl/igc.crl"))
    assert cfg.store_url == f"sqlite+aiosqlite:///{folder / 'relay.db'}"
    assert cfg.spool_dir == folder / "spool"


def test_spool_dir_may_leave_the_config_folder(tmp_path: Path, template: str) -> None:
    """Packaged, relay.toml is in read-only /etc: the IMAP spool goes to the state folder."""
    text = edited(template, 'spool_dir = "spool"', 'spool_dir = "/var/lib/mssante-relay/spool"')
    assert load_config(write(tmp_path, text)).spool_dir == Path("/var/lib/mssante-relay/spool")


def test_absolute_paths_and_other_urls_kept(tmp_path: Path, template: str) -> None:
    text = edited(template, '\ncert = "pki/server.pem"', '\ncert = "/etc/ssl/mx.pem"')
    text = edited(text, 'url = "sqlite+aiosqlite:///relay.db"', 'url = "sqlite+aiosqlite:////srv/relay.db"')
    cfg = load_config(write(tmp_path, text))
    assert cfg.tls_cert == Path("/etc/ssl/mx.pem")
    assert cfg.store_url == "sqlite+aiosqlite:////srv/relay.db"
    text = edited(template, 'url = "sqlite+aiosqlite:///relay.db"',
                  'url = "postgresql+asyncpg://relay@db/relay"')
    assert load_config(write(tmp_path, text)).store_url == "postgresql+asyncpg://relay@db/relay"


def test_accepted_variants(tmp_path: Path, template: str) -> None:
    text = edited(template, 'level = "info"', 'level = "DEBUG"')
    text = edited(text, 'profile = "default"', 'profile = "strict"')
    text = edited(text, 'listen = "127.0.0.1:2525"', 'listen = "[::1]:25"')
    text = edited(text, "timeout = 300", "timeout = 2.5")
    text = edited(text, 'domain = "patient.mssante.fr"', 'domain = "Patient.MSSante.FR"')
    cfg = load_config(write(tmp_path, text))
    assert cfg.log_level == "debug"
    assert cfg.tls_profile == "strict"
    assert cfg.mx_listen == Listen("::1", 25)
    assert cfg.mx_timeout == 2.5
    assert cfg.domain == "patient.mssante.fr"


def test_defaults_when_sections_are_absent(tmp_path: Path) -> None:
    text = ('[tls]\ncert = "c.pem"\nkey = "k.pem"\ntrust_anchors = "ca.pem"\n'
            '[trust_list]\npath = "tl.xml"\n'
            '[store]\nurl = "sqlite+aiosqlite:///r.db"\nmaster_key = "m.key"\n')
    cfg = load_config(write(tmp_path, text))
    assert cfg.mx_listen == Listen("127.0.0.1", 2525)
    assert cfg.max_message_size == 26_214_400
    assert cfg.tls_profile == "default" and cfg.log_level == "info"


# --- errors name the field --------------------------------------------------------------------------

@pytest.mark.parametrize("field, old, new", [
    ("mx.listen", 'listen = "127.0.0.1:2525"', 'listen = "127.0.0.1"'),
    ("mx.listen", 'listen = "127.0.0.1:2525"', 'listen = "127.0.0.1:99999"'),
    ("mx.listen", 'listen = "127.0.0.1:2525"', 'listen = ":2525"'),
    ("mx.listen", 'listen = "127.0.0.1:2525"', 'listen = "127.0.0.1:smtp"'),
    ("mx.listen", 'listen = "127.0.0.1:2525"', "listen = 2525"),
    ("tls.profile", 'profile = "default"', 'profile = "weak"'),
    ("tls.profile", 'profile = "default"', "profile = 1"),
    ("mx.max_message_size", "max_message_size = 26214400", "max_message_size = 0"),
    ("mx.max_message_size", "max_message_size = 26214400", "max_message_size = -1"),
    ("mx.max_message_size", "max_message_size = 26214400", 'max_message_size = "25MB"'),
    ("mx.max_message_size", "max_message_size = 26214400", "max_message_size = true"),
    ("mx.max_message_size", "max_message_size = 26214400", "max_message_size = 2.5e7"),
    ("mx.max_recipients", "max_recipients = 100", "max_recipients = 0"),
    ("mx.timeout", "timeout = 300", 'timeout = "5m"'),
    ("log.level", 'level = "info"', 'level = "verbose"'),
    ("log.level", 'level = "info"', "level = 3"),
    ("store.url", 'url = "sqlite+aiosqlite:///relay.db"\n', 'url = 5\n'),
    ("store.master_key", 'master_key = "keys/master.key"\n', 'master_key = []\n'),
    ("tls.cert", '\ncert = "pki/server.pem"\n', '\ncert = false\n'),
    ("server.hostname", 'hostname = "mx.patient.mssante.fr"\n', 'hostname = "mx.santé.fr"\n'),
    ("mx.timeout", 'timeout = 300\n', 'timeout = nan\n'),
    ("mx.shutdown_grace", 'shutdown_grace = 30\n', 'shutdown_grace = inf\n'),
    ("store.mailbox_cache_ttl", 'mailbox_cache_ttl = 1.0\n', 'mailbox_cache_ttl = nan\n'),
    ("tls.crls[1]", "crls = []", 'crls = ["a.crl", 2]'),
    ("trust_list.require_digest", "require_digest = false", 'require_digest = "yes"'),
    ("store.group_commit_max", "group_commit_max = 64", "group_commit_max = 0"),
])
def test_bad_value_error_starts_with_field(tmp_path: Path, template: str, field: str, old: str,
                                           new: str) -> None:
    path = write(tmp_path, edited(template, old, new))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f"{field}:"), str(exc.value)


def test_missing_keys_take_the_documented_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[server]\nhostname = "mx.patient.mssante.fr"\n'))
    assert cfg.store_url == f"sqlite+aiosqlite:///{(tmp_path / 'relay.db').resolve()}"
    assert cfg.master_key == tmp_path.resolve() / "keys/master.key"
    assert cfg.tls_cert == tmp_path.resolve() / "pki/server.pem"
    assert cfg.trust_list == tmp_path.resolve() / "trustlist.xml"
    assert cfg.mx_listen.port == 2525 and cfg.max_sessions_per_ip == 50


def test_auth_section(tmp_path: Path, template: str) -> None:
    cfg = load_config(write(tmp_path, template))
    assert (cfg.auth.failures_per_account_source, cfg.auth.failures_per_source) == (5, 20)
    assert (cfg.auth.first_delay, cfg.auth.max_delay, cfg.auth.forget_after) == (1.0, 900.0, 3600.0)
    assert cfg.auth.failure_reply_delay == 1.0 and cfg.auth.hash_threads == 2
    cfg = load_config(write(tmp_path, edited(template, "failure_reply_delay = 1", "failure_reply_delay = 0")))
    assert cfg.auth.failure_reply_delay == 0


@pytest.mark.parametrize("field, old, new", [
    ("auth.failures_per_source", "failures_per_source = 20", "failures_per_source = 0"),
    ("auth.failures_per_account_source", "failures_per_account_source = 5", "failures_per_account_source = 1.5"),
    ("auth.first_delay", "first_delay = 1\n", "first_delay = -1\n"),
    ("auth.max_delay", "max_delay = 900", "max_delay = 0.5"),
    ("auth.failure_reply_delay", "failure_reply_delay = 1", "failure_reply_delay = -1"),
    ("auth.hash_threads", "hash_threads = 2", "hash_threads = true"),
    # an unknown key: the form every section shares (relay/core/configkeys.py)
    (r"relay\.toml: \[auth\] lockout", "hash_threads = 2", "hash_threads = 2\nlockout = 5"),
])
def test_auth_errors_name_the_field(tmp_path: Path, template: str, field: str, old: str, new: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        load_config(write(tmp_path, edited(template, old, new)))


def test_section_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^mx: must be a table"):
        load_config(write(tmp_path, 'mx = "oops"\n'))




@pytest.mark.parametrize("key, old", [("timeout", "timeout = 300"),
                                      ("shutdown_grace", "shutdown_grace = 30")])
def test_boolean_refused_for_float_fields(tmp_path: Path, template: str, key: str, old: str) -> None:
    path = write(tmp_path, edited(template, old, f"{key} = true"))
    with pytest.raises(ConfigError, match=rf"^mx\.{key}:"):
        load_config(path)


def test_non_ascii_port_digit_refused_with_field(tmp_path: Path, template: str) -> None:
    path = write(tmp_path, edited(template, 'listen = "127.0.0.1:2525"', 'listen = "127.0.0.1:25\u00b2"'))
    with pytest.raises(ConfigError, match=r"^mx\.listen:"):
        load_config(path)


def test_parse_listen_direct() -> None:
    assert parse_listen("mx.listen", "0.0.0.0:25") == Listen("0.0.0.0", 25)
    assert parse_listen("mx.listen", "mx.example.fr:65535") == Listen("mx.example.fr", 65535)
    with pytest.raises(ConfigError, match=r"^submission\.listen: expected host:port"):
        parse_listen("submission.listen", "25")


# --- the file itself ------------------------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[mx\nlisten = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as exc:
        load_config(path)
    assert str(path) in str(exc.value)


def test_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)  # a directory


# --- choosing the file ------------------------------------------------------------------------------------

def test_config_path_without_arg_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_CONFIG, raising=False)
    assert ENV_CONFIG == "MSSANTE_RELAY_CONFIG"
    with pytest.raises(ConfigError, match="MSSANTE_RELAY_CONFIG"):
        config_path(None)
    monkeypatch.setenv(ENV_CONFIG, "")
    with pytest.raises(ConfigError, match="MSSANTE_RELAY_CONFIG"):
        config_path(None)


def test_config_path_env_and_arg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_CONFIG, "/etc/mssante/relay.toml")
    assert config_path(None) == Path("/etc/mssante/relay.toml")
    assert config_path("/tmp/other.toml") == Path("/tmp/other.toml")  # --config wins


def test_expired_archives_by_name_date(tmp_path: Path) -> None:
    import datetime as dt

    from relay.ops.export import expired_archives
    for name in ("279035121518989-20150101.tar.gpg", "279035121518989-20160229.tar.gpg",
                 "185022A12345682-20250101.tar.gpg", "notes.txt", "bad-20150101.tar.gpg"):
        (tmp_path / name).write_bytes(b"x")
    got = [p.name for p in expired_archives(tmp_path, 10, dt.date(2026, 2, 28))]
    assert got == ["279035121518989-20150101.tar.gpg", "279035121518989-20160229.tar.gpg"]
    assert expired_archives(tmp_path, 10, dt.date(2026, 2, 27)) == [tmp_path / "279035121518989-20150101.tar.gpg"]


# --- issue 10: DATA deadline, header limits, free space --------------------------------------------

def test_fault_limits_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[server]\nhostname = "mx.patient.mssante.fr"\n'))
    assert cfg.mx_data_timeout == 600
    assert (cfg.header_limits.max_field_bytes, cfg.header_limits.max_fields,
            cfg.header_limits.max_section_bytes) == (102_400, 1_000, 1_048_576)
    assert cfg.store_min_free_bytes == 104_857_600


def test_fault_limits_read_from_the_file(tmp_path: Path, template: str) -> None:
    text = edited(edited(edited(template, "data_timeout = 600", "data_timeout = 2.5"),
                         "max_header_fields = 1000", "max_header_fields = 10"),
                  "min_free_bytes = 104857600", "min_free_bytes = 0")
    cfg = load_config(write(tmp_path, text))
    assert cfg.mx_data_timeout == 2.5 and cfg.header_limits.max_fields == 10 and cfg.store_min_free_bytes == 0


@pytest.mark.parametrize("field, old, new", [
    ("mx.data_timeout", "data_timeout = 600", "data_timeout = 0"),
    ("mx.data_timeout", "data_timeout = 600", 'data_timeout = "10m"'),
    ("mx.data_timeout", "data_timeout = 600", "data_timeout = true"),
    ("mx.max_header_field_bytes", "max_header_field_bytes = 102400", "max_header_field_bytes = 0"),
    ("mx.max_header_fields", "max_header_fields = 1000", "max_header_fields = 1.5"),
    ("mx.max_header_bytes", "max_header_bytes = 1048576", "max_header_bytes = -1"),
    ("store.min_free_bytes", "min_free_bytes = 104857600", "min_free_bytes = -1"),
    ("store.min_free_bytes", "min_free_bytes = 104857600", 'min_free_bytes = "100MB"'),
])
def test_fault_limit_errors_name_the_field(tmp_path: Path, template: str, field: str, old: str, new: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, edited(template, old, new)))
    assert str(exc.value).startswith(f"{field}:"), str(exc.value)


# --- imap.processes ---------------------------------------------------------------------------------

def test_imap_processes_is_one_by_default_bounded_and_only_over_sqlite(tmp_path: Path, template: str) -> None:
    assert load_config(write(tmp_path, template)).imap_processes == 1
    assert load_config(write(tmp_path, template.replace("processes = 1\n", ""))).imap_processes == 1
    assert load_config(write(tmp_path, edited(template, "processes = 1\n", "processes = 3\n"))).imap_processes == 3
    for bad in ("0", "17", '"2"', "true", "1.5"):
        with pytest.raises(ConfigError, match=r"^imap\.processes: "):
            load_config(write(tmp_path, edited(template, "processes = 1\n", f"processes = {bad}\n")))
    pg = edited(edited(template, "processes = 1\n", "processes = 2\n"),
                'url = "sqlite+aiosqlite:///relay.db"', 'url = "postgresql+asyncpg://relay@/relay?host=/run/pg"')
    with pytest.raises(ConfigError, match=r"^imap\.processes: only with the SQLite store; over PostgreSQL run"):
        load_config(write(tmp_path, pg))


# --- imap.reuse_port --------------------------------------------------------------------------------

def test_reuse_port_is_off_by_default_and_only_for_nodes_over_postgresql(tmp_path: Path, template: str) -> None:
    assert load_config(write(tmp_path, template)).imap_reuse_port is False
    on = edited(template, "reuse_port = false", "reuse_port = true")
    with pytest.raises(ConfigError, match=r"^imap\.reuse_port: only for several nodes over one PostgreSQL store"):
        load_config(write(tmp_path, on))  # SQLite: each daemon its own store
    nodes = edited(on, 'url = "sqlite+aiosqlite:///relay.db"', 'url = "postgresql+asyncpg://relay@/relay?host=/run/pg"')
    assert load_config(write(tmp_path, nodes)).imap_reuse_port is True
    with pytest.raises(ConfigError, match=r"imap\.reuse_port"):
        load_config(write(tmp_path, edited(template, "reuse_port = false", 'reuse_port = "yes"')))
