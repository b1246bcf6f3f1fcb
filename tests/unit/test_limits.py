"""relay/core/limits.py: per-key slot counting."""
from relay.core.limits import SlotCounter


def test_acquire_up_to_the_limit_and_release() -> None:
    c = SlotCounter()
    assert c.acquire("a", 2) and c.acquire("a", 2)
    assert not c.acquire("a", 2) and c.count("a") == 2
    assert c.acquire("b", 2)  # keys are independent
    c.release("a")
    assert c.acquire("a", 2)
    for _ in range(3):
        c.release("a")  # releasing more than held never goes negative
    assert c.count("a") == 0 and "a" not in c._counts
