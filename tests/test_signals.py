"""Signals with real processes (issue 13): SIGTERM like Ctrl-C, workers stop with the parent.

Each test runs ``python -m ras2s denoise`` on many tiny cubes, waits until the first
output is reported (so that work is under way), sends a signal, and checks the exit
code, that stderr holds one error line and no traceback, that no temporary file is
left, that every output there is complete, and that no worker process survives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ras2s.io import read_cube, write_cube

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(condition, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def _default_sigint() -> None:
    """In the child: SIGINT back to its default, as in a terminal's foreground job.

    A suite started in the background of a non-interactive shell (``bash .ci/run &``)
    runs with SIGINT ignored, which every child inherits; Python then never raises
    KeyboardInterrupt, and a Ctrl-C test would see the run finish with exit code 0.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    """``python -m ras2s denoise`` in its own session, its stderr collected as it comes."""

    def __init__(self, tmp_path: Path, weights: Path, files: int, workers: int) -> None:
        self.src, self.out = tmp_path / "in", tmp_path / "out"
        self.src.mkdir()
        self.out.mkdir()
        rng = np.random.default_rng(0)
        for k in range(files):
            write_cube(self.src / f"c{k:02d}.npy", rng.random((6, 48, 48)).astype(np.float32))
        args = [sys.executable, "-m", "ras2s", "denoise", str(self.src), "-o", str(self.out)]
        args += ["--layout", "BHW", "--weights", str(weights), "--tile", "16", "--overlap", "4"]
        args += ["--threads", "1", "--workers", str(workers)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            args,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=env,
            preexec_fn=_default_sigint,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def started(self, timeout: float = 60) -> None:
        """Wait until one output is reported written, and note the workers."""
        ok = _wait(lambda: any(" -> " in line for line in self.lines), timeout)
        assert ok, f"no output reported in {timeout} s: {self.lines}"
        self.workers = _children(self.process.pid)

    def finish(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout)
        self.reader.join(5)
        return code

    def check_clean(self) -> None:
        assert not [p for p in self.out.iterdir() if p.name.startswith(".ras2s-")]
        for path in self.out.iterdir():  # whatever was written is whole
            if path.suffix == ".json":  # a cube's sidecar, written after it
                assert json.loads(path.read_text())["output"] == str(path.with_suffix(""))
                continue
            assert read_cube(path, layout="BHW").data.shape == (6, 48, 48)
        assert not any("Traceback" in line for line in self.lines), "\n".join(self.lines)
        assert _wait(lambda: not any(_alive(p) for p in self.workers), 15), "orphan workers"


def test_sigterm_is_like_ctrl_c(tmp_path, tiny_weights):
    run = Run(tmp_path, tiny_weights, files=60, workers=1)
    run.started()
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 143
    errors = [line for line in run.lines if line.startswith("ras2s: error:")]
    assert len(errors) == 1 and "terminated" in errors[0], run.lines
    run.check_clean()


@pytest.mark.parametrize(
    ("how", "code"), [("ctrl-c", 130), ("sigterm", 143)], ids=["ctrl-c", "sigterm"]
)
def test_signal_on_the_parent_stops_every_worker(tmp_path, tiny_weights, how, code):
    run = Run(tmp_path, tiny_weights, files=40, workers=2)
    run.started()
    assert len(run.workers) >= 2, "the workers were not found"
    if how == "ctrl-c":  # the terminal sends SIGINT to the whole foreground group
        os.killpg(run.process.pid, signal.SIGINT)
    else:
        run.process.send_signal(signal.SIGTERM)
    assert run.finish() == code
    errors = [line for line in run.lines if line.startswith("ras2s: error:")]
    assert len(errors) == 1, run.lines
    run.check_clean()


def test_no_worker_writes_after_the_parent_is_killed(tmp_path, tiny_weights):
    run = Run(tmp_path, tiny_weights, files=40, workers=2)
    run.started()
    assert len(run.workers) >= 2, "the workers were not found"
    run.process.send_signal(signal.SIGKILL)
    at_kill = sorted(p.name for p in run.out.iterdir() if not p.name.startswith("."))
    run.finish()
    assert _wait(lambda: not any(_alive(p) for p in run.workers), 15), "orphan workers"
    after = sorted(p.name for p in run.out.iterdir() if not p.name.startswith("."))
    # A cube and its .json sidecar are published as a pair, cube first: the sidecar of a
    # cube already there at the kill may complete that pair; nothing else may appear.
    new = set(after) - set(at_kill)
    assert all(n.endswith(".json") and n[: -len(".json")] in at_kill for n in new), (
        f"a worker wrote an output after its parent had gone: {sorted(new)}"
    )
    run.check_clean()
