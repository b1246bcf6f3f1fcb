"""policy/throttle.py: the budget arithmetic of login throttling (no I/O, the clock passed in)."""
from __future__ import annotations

from policy.throttle import Budget, Ledger

B = Budget(free=3, first_delay=1.0, max_delay=8.0, forget_after=100.0)


def test_delay_doubles_after_the_free_failures_and_is_capped() -> None:
    assert [B.delay(k) for k in range(0, 7)] == [0, 1, 2, 4, 8, 8, 8]
    assert Budget(1, 1.0, 900.0, 3600.0).delay(10_000) == 900.0  # no overflow on a long spray


def test_free_failures_then_exponential_waits() -> None:
    led = Ledger(B)
    now = 0.0
    for _ in range(3):  # typos cost nothing
        assert led.admit("k", now).admitted
        led.begin("k", now)
        led.end("k", now, failed=True)
    a = led.admit("k", now)
    assert not a.admitted and a.wait == 1.0
    assert led.admit("k", 1.0).admitted
    led.begin("k", 1.0)
    led.end("k", 1.0, failed=True)
    assert led.admit("k", 2.5).wait == 0.5  # 2 s after the 4th failure
    assert led.admit("k", 3.0).admitted


def test_other_keys_are_never_held_back() -> None:
    led = Ledger(B)
    for i in range(1000):
        led.begin("stranger", float(i))
        led.end("stranger", float(i), failed=True)
    assert not led.admit("stranger", 1000.0).admitted
    assert led.admit("owner", 1000.0).admitted


def test_in_flight_attempts_count_until_they_settle() -> None:
    led = Ledger(B)
    for _ in range(3):
        assert led.admit("k", 0).admitted
        led.begin("k", 0)
    a = led.admit("k", 0)
    assert a.busy and not a.admitted  # a 4th would exceed the budget if all three fail
    led.end("k", 0, failed=False)  # one succeeded: its place is free again
    assert led.admit("k", 0).admitted
    led.end("k", 0, failed=True)
    led.end("k", 0, failed=True)
    led.begin("k", 0)
    led.end("k", 0, failed=True)
    assert led.admit("k", 0).wait == 1.0
    led.begin("k", 1.0)  # the one attempt allowed after the delay...
    assert led.admit("k", 1.0).busy  # ...and no second one beside it
    led.end("k", 1.0, failed=True)
    assert led.admit("k", 1.0).wait == 2.0


def test_quiet_keys_are_forgotten_and_success_clears() -> None:
    led = Ledger(B)
    for _ in range(5):
        led.begin("k", 0)
        led.end("k", 0, failed=True)
    assert not led.admit("k", 3).admitted  # 4 s after the 5th failure
    assert led.admit("k", 100).admitted and len(led) == 0
    for _ in range(5):
        led.begin("k", 200)
        led.end("k", 200, failed=True)
    led.clear("k")
    assert led.admit("k", 200).admitted and led.failures("k", 200) == 0


def test_memory_is_bounded_under_a_spray_of_keys() -> None:
    led = Ledger(B, max_keys=1000)
    led.begin("busy", 0)  # in flight: never dropped
    for i in range(10_000):
        led.begin(f"k{i}", 1.0)
        led.end(f"k{i}", 1.0, failed=True)
        assert len(led) <= 1001
    assert led.admit("busy", 2.0).admitted
    led.end("busy", 2.0, failed=True)
    assert led.failures("busy", 2.0) == 1


def test_a_key_has_at_most_max_in_flight_attempts() -> None:
    led = Ledger(Budget(free=20, first_delay=1.0, max_delay=8.0, forget_after=100.0), max_in_flight=1)
    assert led.admit("net", 0).admitted
    led.begin("net", 0)
    assert led.admit("net", 0).busy  # well within the free failures, but one at a time
    led.end("net", 0, failed=False)
    assert led.admit("net", 0).admitted
