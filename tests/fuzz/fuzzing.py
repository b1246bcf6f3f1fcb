"""What every atheris harness under tests/fuzz/ shares: how it is started, where its
seed corpus lives, how its dictionary reaches libFuzzer.

A harness is a script `fuzz_<name>.py` with a `test_one_input(data: bytes)` that raises
only when the parser broke its contract, optional `DICTIONARY` tokens, and a last line
`main(sys.argv, "<name>", test_one_input, DICTIONARY)`. Its seed corpus is kept in
tests/fuzz/corpus/<name>/ (small files, checked in; tests/fuzz/make_corpus.py writes
them). libFuzzer is given a scratch folder first (new inputs go there) and the kept
corpus after it, so a run never writes into the repository:

    python tests/fuzz/fuzz_mime.py -max_total_time=600 /tmp/mime-work
    python tests/fuzz/fuzz_mime.py crash-1234...      # replay one input

Without atheris, `test_one_input` and the corpus stay usable (tests/fuzz/test_fuzz_smoke.py
replays the kept corpus through every harness even then).
"""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:
    import atheris  # type: ignore[import-untyped]
except ImportError:
    atheris = None


def instrumented(*modules: str):  # type: ignore[no-untyped-def]
    """A context manager that instruments the imports of `modules` for coverage
    feedback when atheris is there, and does nothing otherwise."""
    if atheris is not None:
        return atheris.instrument_imports(include=list(modules))
    import contextlib
    return contextlib.nullcontext()


def _write_dictionary(path: Path, tokens: Sequence[bytes]) -> None:
    # libFuzzer dictionary syntax: one "quoted" token per line, with \xNN escapes.
    lines = ['"' + "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}"
                           for b in token) + '"' for token in tokens]
    path.write_text("\n".join(lines) + "\n")


def corpus_files(name: str) -> list[Path]:
    folder = CORPUS / name
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def main(argv: list[str], name: str, test_one_input: Callable[[bytes], None],
         dictionary: Sequence[bytes] = ()) -> None:
    if atheris is None:
        # replaying files still works: run each through the harness
        files = [Path(a) for a in argv[1:] if not a.startswith("-")]
        if not files:
            sys.exit("atheris is not installed: pip install atheris (or name files to replay)")
        for f in files:
            for item in ([*f.iterdir()] if f.is_dir() else [f]):
                test_one_input(item.read_bytes())
        return
    args = list(argv)
    folders = [a for a in args[1:] if not a.startswith("-")]
    replaying = any(Path(a).is_file() for a in folders)
    if not replaying:
        if not folders:
            args.append(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
        kept = CORPUS / name
        if kept.is_dir() and str(kept) not in folders:
            args.append(str(kept))
    if dictionary and not any(a.startswith("-dict=") for a in args):
        # one fixed file, rewritten each run: libFuzzer exits without cleaning up
        dict_path = Path(tempfile.gettempdir()) / f"{name}-fuzz.dict"
        _write_dictionary(dict_path, dictionary)
        args.append(f"-dict={dict_path}")
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
