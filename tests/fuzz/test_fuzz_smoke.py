"""Runs every fuzz harness of tests/fuzz/ for a bounded time, from its kept corpus
(tests/fuzz/fuzz_*.py say how to run one for longer).

Each harness gets a few seconds (FUZZ_SECONDS, default 2; the IMAP parser's
IMAP_FUZZ_SECONDS, default 4): about 16 s of fuzzing in all, a smoke test of each harness
on its corpus; the long runs are the harnesses themselves (`python tests/fuzz/fuzz_mime.py
-max_total_time=600 /tmp/mime-work`, as each file says) or FUZZ_SECONDS=60 here. 0 skips the runs. Without
atheris, the kept corpus is still replayed through every harness, so the inputs that
once broke a parser (corpus/*/regress-*) stay regression tests.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
HAVE_ATHERIS = importlib.util.find_spec("atheris") is not None
SECONDS = int(os.environ.get("FUZZ_SECONDS", "2"))
IMAP_SECONDS = int(os.environ.get("IMAP_FUZZ_SECONDS", "4"))
RUNS = int(os.environ.get("FUZZ_RUNS", "200000"))

# harness -> longest input libFuzzer makes up (the kept seeds may be longer)
HARNESSES = {
    "imap_parser": 2048,
    "smtp_data": 4096,
    "mime": 8192,
    "xdm": 16384,
    "cda": 16384,
    "ins_addresses": 256,
    "trustlist": 8192,
}


def test_every_harness_is_run_here() -> None:
    assert {p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py")} == set(HARNESSES)


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_fuzz_harness(name: str, tmp_path: Path) -> None:
    harness = HERE / f"fuzz_{name}.py"
    seconds = IMAP_SECONDS if name == "imap_parser" else SECONDS
    if not HAVE_ATHERIS:
        kept = HERE / "corpus" / name
        if not kept.is_dir():
            pytest.skip("atheris is not installed (pip install atheris) and no kept corpus to replay")
        result = subprocess.run([sys.executable, str(harness), str(kept)], capture_output=True, text=True,
                                check=False, timeout=300, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-4000:]
        return
    if seconds <= 0:
        pytest.skip("FUZZ_SECONDS=0")
    work = tmp_path / "corpus"
    work.mkdir()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    # the IMAP harness seeds its own folder; the others add their kept corpus after it
    result = subprocess.run(
        [sys.executable, str(harness), f"-max_total_time={seconds}", f"-runs={RUNS}", "-timeout=10",
         f"-max_len={HARNESSES[name]}", f"-artifact_prefix={artifacts}/", str(work)],
        capture_output=True, text=True, check=False, timeout=seconds + 180, cwd=tmp_path)
    crashes = sorted(artifacts.iterdir())
    detail = result.stderr[-4000:]
    if crashes:
        detail += f"\nfirst crash input: {crashes[0].read_bytes()[:500]!r}"
    assert result.returncode == 0 and not crashes, detail
    assert "Done" in result.stderr, detail
