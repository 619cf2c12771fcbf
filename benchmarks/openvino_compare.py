"""Speed and accuracy of ras2s under OpenVINO (fp32 and bf16) against our PyTorch paths.

OpenVINO is not a dependency of ras2s: run this from a separate environment that has
``openvino`` and ras2s installed (``pip install openvino`` and ``pip install -e .``).

For each size, our model (``load_model(weights, precision="fp32")``) is traced and
converted by ``openvino.convert_model`` with a static input shape (the region stage's
per-pixel group convolution does not convert with dynamic shapes). Conversion runs in a
child process, so a size whose conversion takes longer than ``--convert-timeout`` is
reported and skipped; the IR is saved uncompressed (float32 weights) and can be kept in
``--ir-dir`` for a later run (``--convert-only`` converts and stops, e.g. to convert
while other work runs and time later on a quiet machine). The IR is compiled for the CPU
twice, with ``INFERENCE_PRECISION_HINT`` f32 and bf16, both with ``--threads`` threads;
conversion and each compilation are timed separately.

Four paths then run interleaved in one process (torch fp32, torch bf16, OpenVINO fp32,
OpenVINO bf16; A, B, C, D, A, B, C, D, ...) with the same thread count, on a real cube
(the one of ``compare_official.py``: CAVE cloth for 31 bands, ABU airport-4 for 191,
reflect-extended to the size) with fresh i.i.d. noise (sigma 30/255) at every run; each
figure is the minimum of ``--repeats`` (>= 3) runs after one warm-up. Accuracy: MPSNR of
each path's output against the clean cube (from the last run), and the max abs
difference of OpenVINO fp32 from torch fp32.

    python benchmarks/openvino_compare.py --weights ../shared/reference/s2s_official.pth \\
        --data ../shared/data --sizes 31x128x128,31x256x256 --threads 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from compare_official import noisy_input, real_clean  # noqa: E402

from ras2s.metrics import mpsnr  # noqa: E402
from ras2s.weights import load_model  # noqa: E402

PATHS = ("torch fp32", "torch bf16", "OV fp32", "OV bf16")
OV_PRECISION = {"OV fp32": "f32", "OV bf16": "bf16"}

Size = tuple[int, int, int]


def parse_size(text: str) -> Size:
    bands, h, w = (int(v) for v in text.split("x"))
    return bands, h, w


def size_name(size: Size) -> str:
    return "x".join(map(str, size))


def convert_one(weights: str, size: Size, data: Path, xml: Path, threads: int) -> None:
    """Child process: convert the fp32 model at ``size`` and save the IR next to its timing."""
    import openvino as ov

    torch.set_num_threads(threads)
    model = load_model(weights, precision="fp32")
    x = noisy_input(real_clean(size, data), 0)
    start = time.perf_counter()
    ov_model = ov.convert_model(model, example_input=x, input=[list(x.shape)])
    seconds = time.perf_counter() - start
    ov.save_model(ov_model, xml, compress_to_fp16=False)
    xml.with_suffix(".json").write_text(json.dumps({"convert_s": seconds}))


def converted(size: Size, args: argparse.Namespace) -> tuple[Path, float] | None:
    """The IR of ``size`` and its conversion seconds, converting it if not in the IR folder.

    Returns ``None`` (after printing why) when conversion fails or exceeds the timeout.
    """
    xml = args.ir_dir / f"ras2s_{size_name(size)}.xml"
    record = xml.with_suffix(".json")
    if not (xml.exists() and record.exists()):
        command = [sys.executable, __file__, "--convert-to", str(xml), "--sizes", size_name(size)]
        command += ["--weights", args.weights, "--data", str(args.data)]
        command += ["--threads", str(args.threads)]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=args.convert_timeout
            )
        except subprocess.TimeoutExpired:
            print(f"{size_name(size)}: conversion exceeded {args.convert_timeout:.0f} s, skipped")
            return None
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            print(f"{size_name(size)}: conversion failed (exit {done.returncode}):\n{tail}")
            return None
    return xml, json.loads(record.read_text())["convert_s"]


def compile_ir(core, xml: Path, hint: str, threads: int) -> tuple[object, float]:
    """``xml`` compiled for the CPU with precision ``hint``; and the compile seconds."""
    ov_model = core.read_model(xml)
    config = {
        "INFERENCE_PRECISION_HINT": hint,
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    }
    start = time.perf_counter()
    compiled = core.compile_model(ov_model, "CPU", config)
    return compiled, time.perf_counter() - start


def timed(runner, x: torch.Tensor) -> tuple[float, np.ndarray]:
    """Seconds of one forward pass of a torch module or compiled OpenVINO model; its output."""
    if isinstance(runner, torch.nn.Module):
        with torch.inference_mode():
            start = time.perf_counter()
            y = runner(x)
            seconds = time.perf_counter() - start
        return seconds, y[0].float().numpy()
    data = x.numpy()
    start = time.perf_counter()
    y = runner(data)[0]
    return time.perf_counter() - start, np.asarray(y)[0]


def measure(size: Size, ir: tuple[Path, float], torch_models: dict, args) -> dict:
    """Compile both OpenVINO variants for ``size``, then time all four paths interleaved."""
    import openvino as ov

    xml, convert_s = ir
    core = ov.Core()
    runners = dict(torch_models)
    compile_s = {}
    for path, hint in OV_PRECISION.items():
        runners[path], compile_s[path] = compile_ir(core, xml, hint, args.threads)
    clean = real_clean(size, args.data)
    for runner in runners.values():
        timed(runner, noisy_input(clean, 0))  # warm-up
    times: dict[str, list[float]] = {path: [] for path in PATHS}
    outputs: dict[str, np.ndarray] = {}
    for run in range(args.repeats):
        x = noisy_input(clean, run + 1)
        for path in PATHS:
            seconds, outputs[path] = timed(runners[path], x)
            times[path].append(seconds)
    best = {path: min(t) for path, t in times.items()}
    return {
        "size": size_name(size),
        "convert_s": convert_s,
        "compile_s": compile_s,
        "seconds": best,
        "all_seconds": times,
        "mpsnr": {path: mpsnr(outputs[path], clean, data_range=1.0) for path in PATHS},
        "max_abs_diff_ov_fp32": float(np.abs(outputs["OV fp32"] - outputs["torch fp32"]).max()),
    }


def print_row(row: dict) -> None:
    seconds, psnr = row["seconds"], row["mpsnr"]
    compile_s = ", ".join(f"{p} {s:.1f} s" for p, s in row["compile_s"].items())
    print(
        f"\n{row['size']}: conversion {row['convert_s']:.1f} s, compilation {compile_s}; "
        f"max |OV fp32 - torch fp32| {row['max_abs_diff_ov_fp32']:.2e}"
    )
    print(
        f"  {'path':>10} {'seconds':>8} {'/ torch fp32':>12} {'/ torch bf16':>12} {'MPSNR dB':>9}"
    )
    for path in PATHS:
        print(
            f"  {path:>10} {seconds[path]:8.2f} {seconds[path] / seconds['torch fp32']:12.2f} "
            f"{seconds[path] / seconds['torch bf16']:12.2f} {psnr[path]:9.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="../shared/reference/s2s_official.pth")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--sizes", default="31x128x128,31x256x256")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--ir-dir", type=Path, default=None, help="Keep converted IRs here (default: a temp dir)."
    )
    parser.add_argument("--convert-timeout", type=float, default=300.0, help="seconds per size")
    parser.add_argument("--convert-only", action="store_true", help="Convert the sizes and stop.")
    parser.add_argument("--convert-to", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    if args.convert_to is not None:
        convert_one(args.weights, sizes[0], args.data, args.convert_to, args.threads)
        return

    import openvino as ov

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        if args.ir_dir is None:
            args.ir_dir = Path(scratch)
        args.ir_dir.mkdir(parents=True, exist_ok=True)
        if args.convert_only:
            for size in sizes:
                ir = converted(size, args)
                if ir is not None:
                    print(f"{size_name(size)}: converted in {ir[1]:.1f} s -> {ir[0]}")
            return
        print(
            f"torch {torch.__version__}, OpenVINO {ov.get_version()}, {args.threads} threads, "
            f"min of {args.repeats} runs, weights {args.weights}"
        )
        torch_models = {
            "torch fp32": load_model(args.weights, precision="fp32"),
            "torch bf16": load_model(args.weights, precision="bf16"),
        }
        rows = []
        for size in sizes:
            ir = converted(size, args)
            if ir is None:
                continue
            rows.append(measure(size, ir, torch_models, args))
            print_row(rows[-1])
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
