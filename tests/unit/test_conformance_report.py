"""relay/conformance/report.py and the `conformance run` arguments: lines, the rich
display on a terminal, JUnit for CI, usage errors naming the flag."""
from __future__ import annotations

import io
from xml.etree import ElementTree as ET

import pytest

from relay.cli import main
from relay.conformance.report import Printer, junit, line, summary
from relay.conformance.results import Outcome, Status, exit_status

OUTCOMES = [
    Outcome("refusal.relay", "a foreign domain gets 550 5.7.1", Status.PASS, "foreign domain: 550 5.7.1",
            "relay_denied", ["C: RCPT TO:<someone@example.org>", "S: 550 5.7.1 Relais refuse / Relay denied"]),
    Outcome("test_address.ack", "TEST gets an acknowledgement", Status.FAIL, "no acknowledgement within 60 s",
            "autoreply", ["C: DATA", "S: 250 2.0.0 OK \x01"]),
    Outcome("conversation.second_sender", "[FIN] closes one exchange", Status.SKIP, "needs --second-sender",
            "exchange_closed"),
]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_summary_and_exit_status() -> None:
    assert line(OUTCOMES[0]) == "PASS  refusal.relay: foreign domain: 550 5.7.1 [relay_denied]"
    assert summary(OUTCOMES, "scenarios") == "3 scenarios: 1 passed, 1 failed, 1 skipped"
    assert exit_status(OUTCOMES) == 1 and exit_status([OUTCOMES[0], OUTCOMES[2]]) == 0


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    p = Printer(3, out)
    for o in OUTCOMES:
        p.done(o)
    p.close()
    assert out.getvalue().splitlines() == [line(o) for o in OUTCOMES]


def test_rich_display_on_a_terminal() -> None:
    out = Terminal()
    p = Printer(3, out)
    for o in OUTCOMES:
        p.starting(o.name)
        p.done(o)
    p.close()
    text = out.getvalue()
    assert "\x1b[" in text  # colours: rich drew it
    for o in OUTCOMES:
        assert o.name in text and o.status.value in text


def test_junit_one_testcase_per_scenario_with_the_exchange() -> None:
    root = ET.fromstring(junit([*OUTCOMES], "conformance.run"))
    [suite] = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["refusal.relay"].find("failure") is None
    assert "S: 550 5.7.1" in cases["refusal.relay"].find("system-out").text
    failure = cases["test_address.ack"].find("failure")
    assert failure.get("message") == "no acknowledgement within 60 s [autoreply]"
    assert "\x01" not in cases["test_address.ack"].find("system-out").text  # XML 1.0 has no such character
    assert cases["conversation.second_sender"].find("skipped").get("message") == "needs --second-sender [exchange_closed]"


@pytest.mark.parametrize("args, message", [
    (["--mx", "nohost"], "--mx: 'nohost' is not HOST:PORT"),
    (["--mx", "127.0.0.1:1", "--cert", "/nonexistent.pem"], "--cert: /nonexistent.pem: no such file"),
    (["--mx", "127.0.0.1:1", "--cert", __file__, "--key", __file__, "--ca", __file__, "--sender", "not-an-address",
      "--patient", "279035121518989"], "--sender: 'not-an-address' is not an e-mail address"),
    (["--mx", "127.0.0.1:1", "--cert", __file__, "--key", __file__, "--ca", __file__, "--sender", "a@b.fr",
      "--patient", "279035121518988"], "--patient: "),
    (["--mx", "127.0.0.1:1", "--cert", __file__, "--key", __file__, "--ca", __file__, "--sender", "a@b.fr",
      "--patient", "279035121518989", "--only", "nothing.*"], "--only: no scenario matches nothing.*"),
])
def test_run_usage_errors_name_the_flag(args: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("MSSANTE_RELAY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["conformance", "run", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mssante-relay: error: ") and message in err and "Traceback" not in err


def test_the_unknown_ins_the_kit_draws_is_always_well_formed() -> None:
    from policy.ins import is_valid_ins
    from relay.conformance.peer import random_ins, wrong_key

    drawn = [random_ins() for _ in range(2000)]
    assert all(is_valid_ins(i) and i.startswith("7") for i in drawn)
    assert not any(is_valid_ins(wrong_key(i)) for i in drawn)
