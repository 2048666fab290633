"""The runnable seed-chapter examples (examples/seed_chapter_<backend>.py) run and say what the
README shows: each requested framework backend's script exits 0 (its own asserts check every
section's promise) and prints the five sections, in order, under the same headings as the other
frameworks' scripts.

Each script runs in its own interpreter, as a reader would run it. A requested backend whose
framework is missing fails here (the script cannot import it), never skips.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ADAPTER_BACKENDS, REQUESTED

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BACKENDS = [b for b in REQUESTED if b in ADAPTER_BACKENDS]

#: The headings the README puts side by side: the same in every framework's script.
SECTIONS = [
    "== 1. Built-in initialization: weights N(0, 0.01), biases 0",
    "== 2. Constant: weights 1, biases 0",
    "== 3. One initializer per block: Xavier on the first layer, 42 on the last",
    "== 4. Custom initialization: d2l's my_init, U(-10, 10) zeroed where |w| < 5",
    "== 5. Setting parameters directly",
]

# Importing TensorFlow or MXNet alone takes seconds on a small CPU machine.
TIMEOUT = 300

# The core env has no framework: nothing to collect there (not an empty, skipped parametrization).
if BACKENDS:

    @pytest.mark.parametrize("backend", BACKENDS)
    def test_the_seed_chapter_example_runs_and_prints_every_section(backend: str) -> None:
        script = EXAMPLES / f"seed_chapter_{backend}.py"
        assert script.is_file(), f"{script} is missing"
        done = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=EXAMPLES.parent,
        )
        assert done.returncode == 0, (
            f"{script.name} exited with {done.returncode}\n"
            f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
        lines = done.stdout.splitlines()
        headings = [line for line in lines if line.startswith("== ")]
        assert headings == SECTIONS, f"{script.name} printed the sections\n" + "\n".join(headings)
        # Every section prints its results, not only its heading.
        for heading, following in itertools.pairwise(lines):
            assert not (heading in SECTIONS and following.startswith("== ")), f"{heading!r} printed nothing"
        assert not lines[-1].startswith("== "), f"{lines[-1]!r} printed nothing"
