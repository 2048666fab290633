"""Running a JAX test file again in a fresh process with simulated CPU devices.

XLA reads ``--xla_force_host_platform_device_count`` only before JAX is imported, so a test
that needs a mesh of 8 CPU devices cannot get one in a process that imported JAX with one.
The tox env does not set the flag for every file (it would put every other JAX test on 8
devices); a file that needs them runs itself again through ``rerun``, and fails when any of the
tests it re-ran fails or is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rerun(test_file: str, devices: int, *pytest_args: str, timeout: float = 1800) -> str:
    """Run ``pytest test_file *pytest_args`` with ``devices`` simulated CPU devices; its output.

    Raises ``AssertionError`` (with the tail of the output) when the run fails, or when it
    passed nothing or skipped anything.
    """
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file, *pytest_args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-3000:]
    return done.stdout
