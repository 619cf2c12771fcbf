"""Progress in a log: plain lines, not a redrawn bar, when stderr is not a terminal."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

from ras2s.inference import denoise_windows
from ras2s.progress import LogLines, progress_setting

pytestmark = pytest.mark.usefixtures("one_thread")


def test_log_lines_drop_carriage_returns_and_blank_clears(capsys):
    lines = LogLines()
    lines.write("\rtiles:  10%|#         | 1/10 [00:01<00:09]   ")
    lines.write("\r" + " " * 40 + "\r")  # tqdm clearing its bar
    lines.write("\n")
    lines.flush()
    assert capsys.readouterr().err == "tiles:  10%|#         | 1/10 [00:01<00:09]\n"
    assert isinstance(pickle.loads(pickle.dumps(lines)), LogLines)  # settings go to workers


def test_the_setting_follows_the_terminal(monkeypatch):
    assert progress_setting(quiet=True) is False
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress_setting(quiet=False) is True
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    setting = progress_setting(quiet=False, interval=30)
    assert isinstance(setting["file"], LogLines)
    assert setting["mininterval"] == setting["delay"] == 30 and setting["leave"] is True
    # tqdm's monitor thread refreshes a bar whose last line is older than maxinterval:
    # below the interval it printed a second line 10 s after each one
    assert setting["maxinterval"] == 30


@pytest.mark.parametrize("stream", [False, True])
def test_a_denoise_logs_one_line_per_status_and_ends_at_the_total(
    tiny_model, rng, capsys, stream
):
    cube = (rng.random((6, 96, 120)) * 1000).astype(np.uint16)
    denoise_windows(
        cube,
        lambda rows, block: None,
        model=tiny_model,
        tile=48,
        overlap=12,
        stream=stream,
        max_memory=1 << 20,
        progress=progress_setting(quiet=False, interval=0),
    )
    err = capsys.readouterr().err
    assert "\r" not in err
    tiles = [line for line in err.splitlines() if line.startswith("denoise:")]
    assert tiles and tiles[-1].startswith("denoise: 100%") and "tile" in tiles[-1]
    passes = [line.split(":")[0] for line in err.splitlines() if not line.startswith("denoise")]
    assert set(passes) == ({"scan", "range", "write"} if stream else set())


def test_a_short_cli_run_in_a_log_prints_no_progress(tmp_path, tiny_weights):
    source = tmp_path / "cube.npy"
    np.save(source, np.random.default_rng(0).random((4, 40, 40), dtype=np.float32))
    done = subprocess.run(
        [
            sys.executable, "-m", "ras2s", "denoise", str(source), "-o",
            str(tmp_path / "out.npy"), "--weights", str(tiny_weights), "--threads", "1",
        ],  # fmt: skip
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "%|" not in done.stderr and "\r" not in done.stderr  # under the 60 s delay
