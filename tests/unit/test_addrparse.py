"""relay/smtp/addrparse.py: the fast reading of a plain path gives what aiosmtpd's own
reading (the stdlib's RFC 5322 parser) gives, and declines everything else."""
from __future__ import annotations

import random

from aiosmtpd.smtp import SMTP

from relay.smtp.addrparse import plain_path


def aiosmtpd_reading(arg: str) -> tuple[str | None, str | None]:
    server = SMTP.__new__(SMTP)
    server.local_part_limit = 0
    return SMTP._getaddr(server, arg)


PLAIN = [
    "<bench@test-operator.mssante.fr>",
    "<279035121518989@patient.mssante.fr>",
    "<279035121518989@patient.mssante.fr> SIZE=10240",
    "<a.b+c@x-y.example> BODY=8BITMIME SMTPUTF8",
    " <x@y>",
    "\t<x@y>  SIZE=1",
    "<Reponse.Automatique-Test@PATIENT.mssante.fr>",
    "<!#$%&'*+/=?^_`{|}~-@a>",
]
OTHER = [
    "<>", "<", "<x@y", "x@y", '<"a b"@y>', "<a..b@y>", "<.a@y>", "<a.@y>", "<a@[127.0.0.1]>",
    "<a@y.>", "<a@.y>", "<a@y..z>", "<@relay:a@y>", "<(c)a@y>", "<a@y(c)>", "<é@y>", "<a@é.fr>",
    "<a b@y>", "<a@y z>", "< a@y>", "<a@y >", "<a@y> (c) SIZE=1", "<a@>", "<@y>", "<a@b@c>", "<a\\b@y>", "",
]


def test_plain_paths_read_as_aiosmtpd_reads_them() -> None:
    for arg in PLAIN:
        assert plain_path(arg) is not None, arg
        assert plain_path(arg) == aiosmtpd_reading(arg), arg


def test_anything_else_is_left_to_aiosmtpd() -> None:
    for arg in OTHER:
        assert plain_path(arg) is None, arg


def test_random_paths_agree_whenever_the_fast_reading_applies() -> None:
    rnd = random.Random(15)
    alphabet = "ab.-_+@<> \t\"()[]:\\é1S="
    fast = 0
    for _ in range(20_000):
        arg = "<" + "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 12))) + rnd.choice([">", "> X=1", ""])
        got = plain_path(arg)
        if got is not None:
            fast += 1
            assert got == aiosmtpd_reading(arg), arg
    assert fast > 10  # the comparison did run on plain paths


def test_local_part_limit_still_applies_on_the_fast_path() -> None:
    from relay.smtp.engine import RelaySMTP
    server = RelaySMTP.__new__(RelaySMTP)
    server.local_part_limit = 3
    assert server._getaddr("<abcd@y>") == (None, None)
    assert server._getaddr("<abc@y> SIZE=1") == ("abc@y", "SIZE=1")
