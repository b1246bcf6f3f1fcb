"""relay/web/rows.py: the Messagerie's rows rendered once, keyed by what they show."""
from __future__ import annotations

import datetime as dt

import jinja2
from markupsafe import Markup

from relay.web.app import HERE, french_date
from relay.web.mailview import Person
from relay.web.pages_mail import Row
from relay.web.rows import RowCache


def _macro():  # type: ignore[no-untyped-def]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["date"] = french_date
    return env.get_template("list_row.html").module.row


def _row(uid: int, unread: bool, subject: str = "Compte rendu <b>") -> Row:
    when = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc)
    return Row("reception", uid, Person("Dr Martin", "dr.martin@test-operator.mssante.fr"), subject, when, unread, 2)


def test_a_row_is_rendered_once_and_escaped() -> None:
    cache, made = RowCache(), []
    macro = _macro()

    def make() -> Row:
        made.append(1)
        return _row(7, True)

    first = cache.html((1, "reception", 5, 7, True), make, macro)
    again = cache.html((1, "reception", 5, 7, True), make, macro)
    assert made == [1] and first is again and isinstance(first, Markup)
    assert 'href="/messagerie/reception/7"' in first and "Compte rendu &lt;b&gt;" in first
    assert '<span class="mark">Non lu</span>' in first and "23 nov. 2026 à 10:00" in first
    assert "2 pièces jointes" in first and "&lt;dr.martin@test-operator.mssante.fr&gt;" in first


def test_read_and_unread_are_two_rows() -> None:
    cache, macro = RowCache(), _macro()
    unread = cache.html((1, "reception", 5, 7, True), lambda: _row(7, True), macro)
    read = cache.html((1, "reception", 5, 7, False), lambda: _row(7, False), macro)
    assert "Non lu" in unread and "Non lu" not in read and 'class="unread"' in unread


def test_rows_are_bounded_oldest_out() -> None:
    cache, macro, made = RowCache(capacity=3), _macro(), []

    def make(uid: int) -> Row:
        made.append(uid)
        return _row(uid, False)

    for uid in range(5):
        cache.html((1, "reception", 5, uid, False), lambda u=uid: make(u), macro)
    assert len(cache) == 3
    cache.html((1, "reception", 5, 4, False), lambda: make(4), macro)  # kept
    cache.html((1, "reception", 5, 0, False), lambda: make(0), macro)  # dropped: made again
    assert made == [0, 1, 2, 3, 4, 0]
