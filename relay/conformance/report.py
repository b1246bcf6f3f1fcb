"""Output of the kit: one line per scenario or check on the terminal, JUnit XML for a
CI system (one testcase per scenario, the exchange in system-out), JSON for machines."""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO
from xml.etree import ElementTree as ET

from relay.conformance.results import Outcome, Status

_RESTRICTED = {c: None for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)}  # XML 1.0 §2.2


def line(o: Outcome) -> str:
    rule = f" [{o.rule}]" if o.rule else ""
    return f"{o.status.value:4}  {o.name}: {o.reason}{rule}"


def summary(outcomes: Sequence[Outcome], noun: str) -> str:
    counts = {s: sum(1 for o in outcomes if o.status is s) for s in Status}
    return (f"{len(outcomes)} {noun}: "
            f"{counts[Status.PASS]} passed, {counts[Status.FAIL]} failed, {counts[Status.SKIP]} skipped")


def _clean(text: str) -> str:
    return text.translate(_RESTRICTED)


def junit(outcomes: Sequence[Outcome], suite: str) -> bytes:
    """JUnit XML as Jenkins, GitLab and GitHub read it: <testsuites><testsuite> with one
    <testcase> each; <failure> or <skipped> with the reason; the exchange in <system-out>."""
    root = ET.Element("testsuites")
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(o.group or suite, []).append(o)
    for name, items in groups.items():
        ts = ET.SubElement(root, "testsuite", {
            "name": _clean(name), "tests": str(len(items)),
            "failures": str(sum(1 for o in items if o.status is Status.FAIL)),
            "skipped": str(sum(1 for o in items if o.status is Status.SKIP)),
            "errors": "0", "time": f"{sum(o.seconds for o in items):.3f}"})
        for o in items:
            tc = ET.SubElement(ts, "testcase", {"classname": _clean(f"{suite}.{o.name.split('.')[0]}"),
                                                "name": _clean(o.name), "time": f"{o.seconds:.3f}"})
            message = _clean(o.reason + (f" [{o.rule}]" if o.rule else ""))
            if o.status is Status.FAIL:
                ET.SubElement(tc, "failure", {"message": message, "type": o.rule or "conformance"}).text = \
                    _clean(o.title)
            elif o.status is Status.SKIP:
                ET.SubElement(tc, "skipped", {"message": message})
            out = ET.SubElement(tc, "system-out")
            out.text = _clean("\n".join([o.title, *o.exchange]))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(path: Path, outcomes: Sequence[Outcome], suite: str) -> None:
    path.write_bytes(junit(outcomes, suite))


def as_json(outcomes: Sequence[Outcome]) -> str:
    counts = {s.value.lower(): sum(1 for o in outcomes if o.status is s) for s in Status}
    return json.dumps({"summary": counts, "results": [o.as_json() for o in outcomes]}, ensure_ascii=False, indent=2)


class Printer:
    """One line per outcome as it comes; a `rich` progress bar above them when the
    output is a terminal (and not --json)."""

    def __init__(self, total: int, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self._progress = None
        self._task = None
        if not quiet and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._console = Console(file=self.stream, highlight=False)
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      console=self._console, transient=True)
            self._task = self._progress.add_task("conformance", total=total)
            self._progress.start()

    def starting(self, name: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=name)

    def done(self, o: Outcome) -> None:
        if self.quiet:
            return
        if self._progress is not None:
            style = {Status.PASS: "green", Status.FAIL: "bold red", Status.SKIP: "yellow"}[o.status]
            self._console.print(f"[{style}]{o.status.value:4}[/]  ", end="", markup=True)
            self._console.print(line(o)[6:], markup=False, highlight=False)
            self._progress.advance(self._task)
        else:
            print(line(o), file=self.stream, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
