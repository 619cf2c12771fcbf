"""Writes that survive a crash, a full disk and a second process (issue 25, classes 1-3).

Crash safety is checked with real processes killed by SIGKILL at random points of a
write loop; a full disk with a real file-size limit (``RLIMIT_FSIZE``) on the real
command; races with two real commands started at the same moment.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ras2s.errors import OutputError
from ras2s.evaluate.results import CSV_COLUMNS, Recorder
from ras2s.io import (
    FolderLock,
    _no_room,
    atomic_path,
    read_cube,
    write_atomically,
    write_cube,
    write_text_atomically,
)
from ras2s.weights import save_weights

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONWARNINGS": "ignore"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".ras2s-"))


def _ras2s(*args, preexec_fn=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ras2s", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        preexec_fn=preexec_fn,
    )


# --------------------------------------------------------------------- 1. durability


@pytest.fixture
def fsync_log(monkeypatch):
    """Every fsync (by path), rename and link, in order."""
    log: list[tuple[str, str]] = []
    real_fsync, real_replace, real_rename, real_link = os.fsync, os.replace, os.rename, os.link

    def fsync(fd):
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(a, b, **kw):
        log.append(("publish", os.path.realpath(b)))
        return real_replace(a, b, **kw)

    def rename(a, b, **kw):
        log.append(("publish", os.path.realpath(b)))
        return real_rename(a, b, **kw)

    def link(a, b, **kw):
        log.append(("publish", os.path.realpath(b)))
        return real_link(a, b, **kw)

    import ras2s.io.atomic as atomic

    real_exchange = atomic._exchange

    def exchange(a, b):  # a folder swapped in whole (renameat2 RENAME_EXCHANGE)
        log.append(("publish", os.path.realpath(b)))
        return real_exchange(a, b)

    monkeypatch.setattr(atomic, "_exchange", exchange)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "link", link)
    return log


def _check_flushed(log: list[tuple[str, str]], final: Path) -> None:
    """The data was flushed before ``final`` got its name, and its folder after."""
    final = Path(os.path.realpath(final))
    published = [i for i, (op, p) in enumerate(log) if op == "publish" and p == str(final)]
    assert published, f"{final} was never published: {log}"
    at = published[-1]
    before = [p for op, p in log[:at] if op == "fsync"]
    assert any(
        Path(p).parent == final.parent and Path(p).name.startswith(".ras2s-") for p in before
    )
    assert ("fsync", str(final.parent)) in log[at + 1 :], "the folder is not flushed after"


@pytest.mark.parametrize("name", ["c.npy", "c.npz", "c.h5", "c.mat", "c.tif", "c.hdr", "c_png"])
@pytest.mark.parametrize("force", [False, True])
def test_every_cube_write_is_flushed_before_its_rename_and_the_folder_after(
    tmp_path, rng, fsync_log, name, force
):
    data = rng.integers(0, 255, (3, 6, 5), dtype=np.uint8)
    if force:
        write_cube(tmp_path / name, data)
        fsync_log.clear()
    write_cube(tmp_path / name, data[::-1].copy(), force=force)
    _check_flushed(fsync_log, tmp_path / name)
    if name.endswith(".hdr"):
        _check_flushed(fsync_log, tmp_path / "c.img")
    if name == "c_png":  # every band file of the folder is flushed, not only the folder
        flushed = {Path(p).name for op, p in fsync_log if op == "fsync"}
        assert {"band_001.png", "band_002.png", "band_003.png"} <= flushed
    assert _leftovers(tmp_path) == []
    layout = None if name.endswith(".mat") else "BHW"  # .mat: MATLAB's own order
    np.testing.assert_array_equal(read_cube(tmp_path / name, layout=layout).data, data[::-1])


def test_text_stream_and_weights_writes_are_flushed(tmp_path, fsync_log, tiny_model):
    write_text_atomically(tmp_path / "r.json", "{}")
    _check_flushed(fsync_log, tmp_path / "r.json")
    with atomic_path(tmp_path / "s.bin") as tmp:
        tmp.write_bytes(b"stream")
    _check_flushed(fsync_log, tmp_path / "s.bin")
    save_weights(tiny_model, tmp_path / "w.pt")
    _check_flushed(fsync_log, tmp_path / "w.pt")


def test_evaluate_csv_rows_are_flushed_and_a_torn_row_is_not_glued(tmp_path, fsync_log):
    out = tmp_path / "res"
    out.mkdir()
    header = ",".join(CSV_COLUMNS)
    (out / "per_image.csv").write_text(
        f"{header}\r\na,iid30,noisy,20.0,0.5,0.5,0.1,0,9.0,0.1\r\nb,ii"
    )
    record = _recorder(out)
    record.add(_row("c"))
    assert ("fsync", str(out / "per_image.csv")) in fsync_log
    record.close()
    record.finish()
    lines = (out / "per_image.csv").read_text().splitlines()
    assert lines[2] == "b,ii" and lines[3].startswith("c,iid30,noisy,")  # not "b,iic,..."
    again = _recorder(out)
    assert [r["image"] for r in again.rows] == ["a", "c"]  # the torn row is skipped
    again.discard()


# --------------------------------------------------------------------- crash: SIGKILL

_DRIVER = textwrap.dedent(
    """
    import json, os, random, signal, sys, time, warnings
    from pathlib import Path
    import numpy as np
    from ras2s.io import read_cube, write_cube, write_text_atomically

    warnings.simplefilter("ignore")
    folder, name, rounds, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    target = folder / name
    shape = (31, 96, 96)
    base = np.arange(np.prod(shape), dtype=np.int64).reshape(shape)

    def cube(v):  # every voxel depends on the write's number v (uint16: PNG can hold it)
        return ((base * 13 + 7 * v) % 65536).astype(np.uint16)

    def write(v):
        if name.endswith(".json"):
            text = json.dumps({"v": v, "pad": ["x" * 64] * 4000})
            write_text_atomically(target, text)
        else:
            write_cube(target, cube(v), force=True)

    def found():
        if name.endswith(".json"):
            return json.loads(target.read_text())["v"]
        data = read_cube(target, layout="BHW").data
        v = int(data[0, 0, 0]) * pow(7, -1, 65536) % 65536
        if not np.array_equal(data, cube(v)):
            raise ValueError(f"a mix: starts like write {v} but differs")
        return v

    clock = time.monotonic()
    write(0)
    took = time.monotonic() - clock  # kill within the first three writes or so
    rng = random.Random(seed)
    print(json.dumps({"ready": True}), flush=True)
    for r in range(rounds):
        start = found()
        pid = os.fork()
        if pid == 0:  # the writer: new cubes over the target until killed
            v = start
            while True:
                v += 1
                write(v)
        # random moments; the last round waits long enough for some writes to land even
        # on a loaded machine (so "the kills did land mid-loop" cannot fail by chance)
        time.sleep(rng.uniform(0.05 * took, 3 * took) if r < rounds - 1 else 10 * took + 0.5)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        try:
            outcome = {"found": found(), "before": start}
        except Exception as exc:  # what the test fails on: anything but a whole file
            outcome = {"partial": f"{type(exc).__name__}: {exc}"}
        outcome["temporaries"] = len([p for p in folder.iterdir() if p.name.startswith(".ras2s-")])
        print(json.dumps(outcome), flush=True)
    """
)


@pytest.mark.parametrize("name", ["c.npy", "c.tif", "c.h5", "c.hdr", "c_png", "r.json"])
def test_a_write_killed_at_a_random_point_leaves_the_old_or_the_new_file(tmp_path, name):
    """SIGKILL a process writing over and over the same output, 8 times at random moments.

    After each kill the target must read back whole, exactly as one of the writes made
    it (values encode the write's number, so a mix of two writes is caught), and never
    older than before the kill. Killed temporaries (``.ras2s-*``) may stay beside it.
    """
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    folder = tmp_path / "out"
    folder.mkdir()
    run = subprocess.run(
        [sys.executable, str(script), str(folder), name, "8", str(len(name))],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    outcomes = [json.loads(line) for line in run.stdout.splitlines()[1:]]
    assert len(outcomes) == 8
    for outcome in outcomes:
        assert "partial" not in outcome, outcome
        assert outcome["found"] >= outcome["before"]
    assert any(o["found"] > o["before"] for o in outcomes)  # the kills did land mid-loop


# ------------------------------------------------------------- 2. full disk, size limit


def test_no_room_is_recognised_from_errno_and_from_library_messages():
    assert _no_room(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
    assert _no_room(OSError(errno.EFBIG, "File too large")) == errno.EFBIG
    assert _no_room(OSError(errno.EDQUOT, "Disk quota exceeded")) == errno.EDQUOT
    h5 = OSError("Can't write data (file write failed: errno = 27, error message = 'File too')")
    assert _no_room(h5) == errno.EFBIG
    wrapped = RuntimeError("writer failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert _no_room(wrapped) == errno.ENOSPC
    assert _no_room(OSError(errno.EACCES, "Permission denied")) is None


def _limit_file_size(nbytes: int):
    def limit() -> None:  # SIGXFSZ: Python ignores it, so the write fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return limit


@pytest.mark.parametrize("ext", [".npy", ".tif", ".h5", ".mat", ".hdr"])
def test_a_file_size_limit_mid_write_is_one_line_and_replaces_nothing(tmp_path, rng, ext):
    """``ras2s noise --force`` over an existing output, under ``ulimit -f`` of 64 KiB.

    The new cube (about 300 KiB) cannot be written: one line naming the file and the
    limit, exit 2, no temporary left, the old output and its sidecar byte-identical.
    """
    clean = tmp_path / "clean.npy"
    np.save(clean, rng.random((20, 64, 60)).astype(np.float32))
    out = tmp_path / f"noisy{ext}"
    write_cube(out, rng.random((2, 4, 4)).astype(np.float32))  # an earlier output
    write_text_atomically(tmp_path / f"noisy{ext}.json", '{"case": "iid30"}')  # and its sidecar
    before = {p.name: _sha(p) for p in tmp_path.iterdir() if p.is_file()}
    proc = _ras2s(
        "noise", clean, "-o", out, "--layout", "BHW", "--force", preexec_fn=_limit_file_size(2**16)
    )
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ras2s: error: {out.with_suffix(ext)}")
    assert "File too large" in lines[0] and "ulimit -f" in lines[0]
    assert _leftovers(tmp_path) == []
    assert {p.name: _sha(p) for p in tmp_path.iterdir() if p.is_file()} == before


def test_no_room_in_a_png_folder_write_keeps_the_old_folder(tmp_path, rng, monkeypatch):
    data = rng.integers(0, 255, (4, 6, 6), dtype=np.uint8)
    out = write_cube(tmp_path / "cube", data)
    before = {p.name: _sha(p) for p in out.iterdir()}
    from PIL import Image

    calls = []

    def full(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, fp, *args, **kwargs)

    real = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(OutputError, match=r"cube: writing failed \(No space left on device"):
        write_cube(out, data[::-1].copy(), force=True)
    assert {p.name: _sha(p) for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------- 3. two processes


def test_an_output_that_appears_during_the_write_is_never_replaced_without_force(tmp_path):
    target = tmp_path / "r.json"

    def write(tmp: Path) -> None:
        tmp.write_text("mine")
        target.write_text("theirs")  # another process published first

    with pytest.raises(OutputError, match=r"r\.json: appeared while .* --force"):
        write_atomically(target, write, force=False)
    assert target.read_text() == "theirs" and _leftovers(tmp_path) == []
    write_atomically(target, lambda tmp: tmp.write_text("mine"), force=True)
    assert target.read_text() == "mine"


@pytest.mark.parametrize("name", ["c.npy", "c.hdr", "c_png"])
def test_a_cube_that_appears_during_the_write_is_never_replaced_without_force(
    tmp_path, monkeypatch, name
):
    import ras2s.io as io

    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    write_cube(theirs / name, data + 1)
    real = dict(io._WRITERS)

    def racing(fmt):
        def create(tmp, *args):  # the writer of our temporary is made...
            writer = real[fmt](tmp, *args)
            for p in theirs.iterdir():  # ...and the other process publishes meanwhile
                os.rename(p, tmp_path / p.name)
            return writer

        return create

    for fmt in real:
        monkeypatch.setitem(io._WRITERS, fmt, racing(fmt))
    with pytest.raises(OutputError, match="appeared while"):
        write_cube(tmp_path / name, data)
    np.testing.assert_array_equal(read_cube(tmp_path / name, layout="BHW").data, data + 1)
    assert _leftovers(tmp_path) == []


def _noise_pair(tmp_path, rng, force: bool):
    clean = tmp_path / "clean.npy"
    np.save(clean, rng.random((31, 64, 64)).astype(np.float32))
    out = tmp_path / "noisy.npy"
    extra = ["--force"] if force else []
    procs = [
        _ras2s("noise", clean, "-o", out, "--layout", "BHW", "--seed", seed, *extra)
        for seed in (1, 2)
    ]
    results = [(p.wait(120), p.stderr.read()) for p in procs]
    return clean, out, results


def _check_pair_consistent(out: Path, clean: Path) -> int:
    """The cube is whole and is the one its sidecar describes; returns its seed."""
    from ras2s.cube import normalise
    from ras2s.noise import add_noise

    record = json.loads(out.with_name(out.name + ".json").read_text())
    clean01 = normalise(np.load(clean))[0]
    expected = add_noise(clean01, record["case"], rng=record["seed"])
    np.testing.assert_array_equal(np.load(out), expected)
    return record["seed"]


@pytest.mark.parametrize("force", [False, True], ids=["no-force", "force"])
def test_two_noise_runs_on_one_output(tmp_path, rng, force):
    """Started at the same moment: never a mix of the two.

    Without --force one writes and the other refuses with one line (at its first check
    or, when both got past it, at publication); with --force both succeed and the cube
    and its sidecar come from the same run (they are published under a folder lock).
    """
    clean, out, results = _noise_pair(tmp_path, rng, force)
    codes = sorted(code for code, _ in results)
    if force:
        assert codes == [0, 0], results
    else:
        assert codes == [0, 2], results
        refusal = next(err for code, err in results if code == 2).strip().splitlines()
        assert len(refusal) == 1 and str(out) in refusal[0] and "--force" in refusal[0]
    assert _check_pair_consistent(out, clean) in (1, 2)
    assert _leftovers(tmp_path) == []


def test_two_denoise_runs_on_one_output_one_writes_the_other_refuses(tmp_path, rng, tiny_weights):
    cube = tmp_path / "c.npy"
    np.save(cube, rng.random((8, 24, 24)).astype(np.float32))
    out = tmp_path / "d.npy"
    args = ["denoise", cube, "-o", out, "--weights", tiny_weights, "--layout", "BHW", "-q"]
    procs = [_ras2s(*args) for _ in range(2)]
    results = [(p.wait(180), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    refusal = next(err for code, err in results if code == 2).strip().splitlines()
    assert len(refusal) == 1 and str(out) in refusal[0], refusal
    assert read_cube(out, layout="BHW").data.shape == (8, 24, 24)
    assert json.loads((tmp_path / "d.npy.json").read_text())["output"] == str(out)


def _recorder(out: Path) -> Recorder:
    return Recorder(
        out,
        settings={"seed": 0, "crop": None, "bands": None},
        cases=["iid30"],
        methods=["noisy"],
        images=[],
        method_info={},
        weights_info=None,
        resume=True,
        command=None,
    )


def _row(image: str) -> dict:
    metrics = dict.fromkeys(("psnr", "ssim_paper", "ssim_gaussian", "sam", "ergas"), 1.0)
    return {
        "image": image,
        "case": "iid30",
        "method": "noisy",
        **metrics,
        "sam_excluded": 0,
        "seconds": 0.1,
    }


def test_a_second_evaluate_on_the_same_folder_refuses_until_the_first_ends(tmp_path):
    out = tmp_path / "res"
    first = _recorder(out)
    first.add(_row("a"))
    with pytest.raises(
        OutputError, match=r"res: another process is writing here \(another ras2s evaluate\)"
    ):
        _recorder(out)
    first.close()
    with pytest.raises(OutputError, match="another ras2s evaluate"):  # still, until finish
        _recorder(out)
    first.finish()
    second = _recorder(out)  # the first is done: the second resumes from its rows
    assert [r["image"] for r in second.rows] == ["a"]
    second.discard()


def test_evaluate_command_refuses_a_folder_another_run_holds(tmp_path, rng):
    from click.testing import CliRunner

    from ras2s.cli import main

    np.save(tmp_path / "a.npy", rng.random((4, 16, 16)).astype(np.float32))
    out = tmp_path / "res"
    out.mkdir()
    with FolderLock(out):
        result = CliRunner().invoke(
            main,
            [
                "evaluate",
                str(tmp_path / "a.npy"),
                "--methods",
                "tv",
                "--cases",
                "iid30",
                "--layout",
                "BHW",
                "-o",
                str(out),
                "-q",
            ],
        )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "another ras2s evaluate" in lines[0]
    assert list(out.iterdir()) == []


def test_folder_lock_waits_or_refuses(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(OutputError, match="another process is writing here"):
            FolderLock(tmp_path, wait=False)
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from ras2s.io import FolderLock; FolderLock(sys.argv[1], wait=False)",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
        )
        assert probe.returncode != 0 and "another process is writing here" in probe.stderr
    start = time.monotonic()
    FolderLock(tmp_path, wait=False).release()  # free again once released
    assert time.monotonic() - start < 5


def test_training_checkpoints_are_flushed_before_their_rename(tmp_path, fsync_log):
    from ras2s.train.run import DurableCheckpointIO

    target = tmp_path / "checkpoints" / "last.ckpt"
    DurableCheckpointIO().save_checkpoint({"global_step": 3, "state_dict": {}}, target)
    _check_flushed(fsync_log, target)
    assert torch.load(target, weights_only=True)["global_step"] == 3
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no temporary left
