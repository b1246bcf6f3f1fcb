"""What a scenario or a check found: one record, printed, written as JUnit or JSON."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Status(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(slots=True)
class Outcome:
    """One scenario of `run`, or one check of `check`."""

    name: str  # stable identifier, e.g. "refusal.unknown_ins"
    title: str  # what it proves, in a line
    status: Status
    reason: str  # why it passed, failed or was skipped
    rule: str = ""  # the rule it comes from (policy/dossier_bridge rule name, RFC, référentiel)
    exchange: list[str] = field(default_factory=list)  # what was sent and what came back
    seconds: float = 0.0
    group: str = ""  # the file a check belongs to; the deployment for a scenario

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "title": self.title, "status": self.status.value, "reason": self.reason,
                "rule": self.rule, "exchange": list(self.exchange), "seconds": round(self.seconds, 3),
                "group": self.group}


def exit_status(outcomes: list[Outcome]) -> int:
    """0 only when nothing failed (a skip is not a failure, nor a pass)."""
    return 1 if any(o.status is Status.FAIL for o in outcomes) else 0
