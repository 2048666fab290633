"""``multiinit report``'s progress bar (tqdm): shown on a terminal only.

Without a terminal (a log, CI, captured output) stderr gets nothing from it and stdout is the
same as on a terminal. On a terminal (a pseudo-terminal here) tqdm draws the bar on stderr.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from multiinit import report

from matrix import SPECS, Cell, run_cell

ROOT = Path(__file__).resolve().parent.parent
SUBSET = [s for s in SPECS if s.kind in ("he_normal", "eye", "uniform")]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("results")
    records = [run_cell(Cell("numpy", spec, case)) for spec in SUBSET for case in ("dense", "conv")]
    (folder / "matrix-numpy.json").write_text(
        json.dumps({"kind": "matrix", "backend": "numpy", "records": records})
    )
    return folder


def args(results: Path) -> list[str]:
    return ["report", "--results", str(results), "--backends", "numpy"]


def test_without_a_terminal_stderr_gets_no_progress(results, capsys) -> None:
    assert report.main(args(results)) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert f"{2 * len(SUBSET)}/{2 * len(SUBSET)} cells agree" in captured.out
    assert len(list((results / "report").glob("*.png"))) == len(SUBSET)


def run_on_a_terminal(results: Path) -> tuple[int, str, str]:
    """(exit status, stdout, what the terminal showed) of the report with stderr on a pty."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    code = f"import sys; from multiinit import report; sys.exit(report.main({args(results)!r}))"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=follower,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        text=True,
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    stdout = process.stdout.read()
    process.stdout.close()
    return process.wait(timeout=120), stdout, shown.decode(errors="replace")


def test_on_a_terminal_tqdm_shows_the_pictures_being_drawn(results, capsys) -> None:
    # The report draws without tqdm (no bar); this env must have it: backends/*.txt pin it.
    assert importlib.util.find_spec("tqdm") is not None, (
        "tqdm is not installed in this env; backends/core.txt pins it (tox installs it: tox -e <env>)"
    )
    report.main(args(results))
    plain = capsys.readouterr().out
    status, stdout, shown = run_on_a_terminal(results)
    assert status == 0, shown
    n = len(SUBSET)
    assert "pictures: 100%" in shown and f"{n}/{n}" in shown, shown
    assert "\r" in shown  # redrawn in place
    assert stdout == plain  # the table and the summary do not change
