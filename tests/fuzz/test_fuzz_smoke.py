"""Runs the IMAP parser fuzz harness for a bounded time (tests/fuzz/fuzz_imap_parser.py
says how to run it for longer). Skipped when atheris is not installed."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("fuzz_imap_parser.py")
# Seconds and iterations, whichever ends first; IMAP_FUZZ_SECONDS=0 skips the run.
SECONDS = int(os.environ.get("IMAP_FUZZ_SECONDS", "20"))
RUNS = int(os.environ.get("IMAP_FUZZ_RUNS", "200000"))


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (pip install atheris) — fuzz smoke test not run")
@pytest.mark.skipif(SECONDS <= 0, reason="IMAP_FUZZ_SECONDS=0")
def test_parser_fuzz_smoke(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    result = subprocess.run(
        [sys.executable, str(HARNESS), f"-max_total_time={SECONDS}", f"-runs={RUNS}",
         "-timeout=10", "-max_len=2048", f"-artifact_prefix={artifacts}/", str(corpus)],
        capture_output=True, text=True, check=False, timeout=SECONDS + 120, cwd=tmp_path)
    crashes = sorted(artifacts.iterdir())
    detail = result.stderr[-4000:]
    if crashes:
        detail += f"\nfirst crash input: {crashes[0].read_bytes()[:500]!r}"
    assert result.returncode == 0 and not crashes, detail
    assert "Done" in result.stderr, detail
