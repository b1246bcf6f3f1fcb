"""Issue 15 item 1 on real sessions: the TEST acknowledgement is committed in the
transaction of the message it answers, and nothing is queued before that commit.

The fault is raised inside the writer's transaction, after the job wrote its rows: a
write that reached the database but was rolled back (the "fault at commit")."""
from __future__ import annotations

import smtplib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

import mailbox_store.outbound as outbound_module
import mailbox_store.store as store_module
from tests.integration.conftest import INS_ACTIVE, SENDER, RunningDaemon, message
from tests.integration.test_conversations import ProHandler, world  # noqa: F401 (fixture)

TEST_ADDRESS = "reponse.automatique-test@patient.mssante.fr"
PATIENT = f"{INS_ACTIVE}@patient.mssante.fr"


def io_error() -> OperationalError:
    return OperationalError("INSERT INTO messages ...", {}, sqlite3.OperationalError("disk I/O error"))


def ack_request() -> bytes:
    return message(subject="TEST de messagerie", body="Ceci est un TEST.\r\n", to=TEST_ADDRESS)


def queued(rd: RunningDaemon) -> list[Any]:
    return rd.call(rd.store.queue_items())


def test_ack_and_message_are_one_transaction(world: tuple[RunningDaemon, ProHandler, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    rd, pro, _ = world
    original = store_module._Delivery.apply_group.__func__  # type: ignore[attr-defined]

    def written_then_failed(cls: Any, conn: Any, jobs: list[Any]) -> Any:
        original(cls, conn, jobs)  # every row written, the ack's queue entry included...
        raise io_error()  # ...then the transaction fails

    monkeypatch.setattr(store_module._Delivery, "apply_group", classmethod(written_then_failed))
    with rd.smtp() as s:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            s.sendmail(SENDER, [TEST_ADDRESS, PATIENT], ack_request())
        assert (exc.value.smtp_code, exc.value.smtp_error[:5]) == (451, b"4.3.0")
    assert queued(rd) == []
    assert rd.inbox(INS_ACTIVE) == []
    time.sleep(1.5)  # the queue runner (backoff 1 s) would have sent a queued ack by now
    assert pro.received == []
    # the store writes again: the retried message and its acknowledgement go together
    monkeypatch.undo()
    with rd.smtp() as s:
        assert s.sendmail(SENDER, [TEST_ADDRESS, PATIENT], ack_request()) == {}
    assert len(rd.inbox(INS_ACTIVE)) == 1
    [ack] = pro.wait(1)
    assert b"Auto-Submitted: auto-replied" in ack.content


def test_ack_alone_is_answered_451_when_it_cannot_be_queued(world: tuple[RunningDaemon, ProHandler, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rd, pro, _ = world
    original = outbound_module.PreparedOutgoing.apply

    def written_then_failed(self: Any, conn: Any) -> Any:
        original(self, conn)
        raise io_error()

    monkeypatch.setattr(outbound_module.PreparedOutgoing, "apply", written_then_failed)
    with rd.smtp() as s:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            s.sendmail(SENDER, [TEST_ADDRESS], ack_request())
        assert (exc.value.smtp_code, exc.value.smtp_error[:5]) == (451, b"4.3.0")
    assert queued(rd) == []
    time.sleep(1.5)
    assert pro.received == []


def _autoreply_units(rd: RunningDaemon) -> int:
    from sqlalchemy import text

    from tests.pg import sql
    with sql(rd.config.store_url) as conn:
        return int(conn.execute(text("SELECT COALESCE(SUM(used), 0) FROM budgets WHERE key LIKE 'autoreply:%'"))
                   .scalar_one())


def test_a_451_spends_none_of_the_senders_acknowledgement_budget(world: tuple[RunningDaemon, ProHandler, Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget unit is taken in the commit of the acknowledgement (autotest.py): a
    message answered 451, alone or with a patient, leaves the sender's budget untouched."""
    rd, pro, _ = world
    original = outbound_module.PreparedOutgoing.apply

    def written_then_failed(self: Any, conn: Any) -> Any:
        original(self, conn)  # the budget unit taken, the ack written...
        raise io_error()  # ...then the transaction fails

    monkeypatch.setattr(outbound_module.PreparedOutgoing, "apply", written_then_failed)
    for rcpts in ([TEST_ADDRESS], [TEST_ADDRESS, PATIENT]):
        with rd.smtp() as s:
            with pytest.raises(smtplib.SMTPDataError) as exc:
                s.sendmail(SENDER, rcpts, ack_request())
            assert exc.value.smtp_code == 451
    assert _autoreply_units(rd) == 0
    monkeypatch.undo()
    with rd.smtp() as s:
        assert s.sendmail(SENDER, [TEST_ADDRESS], ack_request()) == {}
    pro.wait(1)
    assert _autoreply_units(rd) == 1  # the committed one, and only it
