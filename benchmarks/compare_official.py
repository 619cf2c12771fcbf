"""Speed, memory and output agreement of ras2s versus the authors' RAS2S code, side by side.

The authors' code is NOT part of this repository: check out MIV-XJTU/RAS2S somewhere
else and pass its folder (the one holding ``basic/``). Every model gets the authors'
checkpoint: the authors' float32 model, ras2s in fp32 (what ``--precision auto`` picks)
and ras2s in bf16. Inputs are a real cube (CAVE cloth, 31 bands; an
AVIRIS ABU scene for 191 bands) normalised to [0, 1], reflect-extended to the size when
the scene is smaller, with fresh i.i.d. noise (sigma 30/255) at every run: uniform random
input would tie the region arg-max and is not what users run. The models run interleaved
(A, B, C, A, B, C, ...) in one process with the same thread count, and each figure is the
minimum of ``--repeats`` (>= 3) runs after one warm-up. Peak memory is measured per model
and size in a fresh subprocess: the growth of peak resident memory over the loaded model
and input (the kernel's peak mark is reset first, so import-time peaks do not hide it).

    python benchmarks/compare_official.py --official-repo ../RAS2S \
        --weights ../shared/reference/s2s_official.pth --data ../shared/data

Needs ``einops`` (the authors' code imports it: ``pip install einops``). Their modules
also import ``thop``, ``seaborn`` and ``matplotlib`` at import time without using them in
the forward pass; missing ones are replaced by empty stand-ins.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

SIZES = [(31, 128, 128), (31, 256, 256), (31, 512, 512), (191, 256, 256)]
MODELS = ("authors", "fp32", "bf16")
SIGMA = 30 / 255


def load_authors_model(repo: Path, weights: Path) -> torch.nn.Module:
    """Import the authors' S2SHSID from a checkout and load their checkpoint."""
    for name in ("thop", "seaborn", "matplotlib", "matplotlib.pyplot"):
        try:
            __import__(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.profile = lambda *a, **k: None
            sys.modules[name] = stub
    sys.path.insert(0, str(repo / "basic" / "models" / "competing_methods"))
    from s2s_backbone.network import S2SHSID  # type: ignore[import-not-found]

    options = {"hidden_dim": 14, "local_range": 1, "region_num": 3, "cpu": True, "gpu_ids": 0}
    model = S2SHSID(options)
    state = torch.load(weights, map_location="cpu", weights_only=True)["net"]
    model.load_state_dict(state)
    return model.eval()


def load_ours(weights: Path, precision: str) -> torch.nn.Module:
    from ras2s.weights import load_model

    return load_model(weights, precision=precision)


def load(which: str, args: argparse.Namespace) -> torch.nn.Module:
    if which == "authors":
        return load_authors_model(args.official_repo, args.weights)
    return load_ours(args.weights, which)


def real_clean(size: tuple[int, int, int], data: Path) -> np.ndarray:
    """A real clean cube of ``size`` in [0, 1]: CAVE cloth (31 bands) or ABU airport-4 (191).

    The scene is normalised as a whole, cut to the first ``bands`` bands and
    reflect-extended (or cropped) to ``H x W``.
    """
    from ras2s.io import read_cube

    bands, h, w = size
    name = "CAVE_cloth/cloth_ms_256.mat" if bands <= 31 else "ABU/abu-airport-4.mat"
    cube = read_cube(data / name).data.astype(np.float32)
    cube = (cube - cube.min()) / (cube.max() - cube.min())
    if cube.shape[0] < bands:
        raise SystemExit(f"{name} has {cube.shape[0]} bands, fewer than {bands}")
    cube = cube[:bands]
    pad_h, pad_w = max(0, h - cube.shape[1]), max(0, w - cube.shape[2])
    cube = np.pad(cube, ((0, 0), (0, pad_h), (0, pad_w)), mode="symmetric")
    return np.ascontiguousarray(cube[:, :h, :w])


def noisy_input(clean: np.ndarray, seed: int) -> torch.Tensor:
    """``clean`` plus i.i.d. Gaussian noise (sigma 30/255) drawn with ``seed``; ``(1, B, H, W)``."""
    rng = np.random.default_rng(seed)
    noisy = clean + rng.normal(0, SIGMA, clean.shape).astype(np.float32)
    return torch.from_numpy(noisy)[None]


def timed(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        start = time.perf_counter()
        y = model(x)
        return time.perf_counter() - start, y


MEMORY_CHILD = """
import resource, sys, torch
from pathlib import Path
import numpy as np
sys.path.insert(0, {here!r})
from compare_official import load, noisy_input, real_clean
import argparse
torch.set_num_threads({threads})
args = argparse.Namespace(official_repo=Path({repo!r}), weights=Path({weights!r}))
model = load({which!r}, args)
x = noisy_input(real_clean(({bands}, {h}, {w}), Path({data!r})), 0)

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

# Reset the kernel's peak-RSS mark (VmHWM) so that import-time peaks do not hide the
# forward pass's own peak; fall back to ru_maxrss where that is not possible.
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base, peak = status("VmRSS"), lambda: status("VmHWM")
except OSError:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with torch.inference_mode():
    model(x)
print(peak() - base)
"""


def peak_memory(which: str, size: tuple[int, int, int], args: argparse.Namespace) -> int:
    bands, h, w = size
    code = MEMORY_CHILD.format(
        here=str(Path(__file__).parent),
        threads=args.threads,
        repo=str(args.official_repo),
        weights=str(args.weights),
        data=str(args.data),
        which=which,
        bands=bands,
        h=h,
        w=w,
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def matmul_peak_gflops(dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Achieved matmul GFLOP/s in ``dtype`` on this machine (the practical compute peak)."""
    a = torch.randn(2048, 2048).to(dtype)
    a @ a
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ a
        runs += 1
    return 2 * 2048**3 * runs / (time.perf_counter() - start) / 1e9


def conv_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of every 2-D convolution and linear layer of one forward pass.

    Counted at the ``torch.nn.functional`` level, so the split and banded convolutions of
    the fast path are counted as they run.
    """
    import torch.nn.functional as F

    total = 0
    conv2d, linear = F.conv2d, F.linear

    def counting_conv2d(inp, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        nonlocal total
        out = conv2d(inp, weight, bias, stride, padding, dilation, groups)
        total += out.numel() * weight[0].numel()
        return out

    def counting_linear(inp, weight, bias=None):
        nonlocal total
        out = linear(inp, weight, bias)
        total += out.numel() * weight.shape[1]
        return out

    F.conv2d, F.linear = counting_conv2d, counting_linear
    try:
        with torch.inference_mode():
            model(x)
    finally:
        F.conv2d, F.linear = conv2d, linear
    return total


def profile_breakdown(model: torch.nn.Module, x: torch.Tensor, macs: int, peak: float) -> str:
    """Where one forward pass spends its time: convolutions (with GFLOP/s), the rest by op."""
    from torch.profiler import profile

    with torch.inference_mode():
        model(x)
        with profile() as prof:
            model(x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    conv = sum(e.self_cpu_time_total for e in events if "convolution" in e.key) / 1e6
    lines = [
        f"  profiled total {total:.3f} s (profiler overhead included)",
        f"  2-D convolutions {conv:.3f} s = {100 * conv / total:.0f} %: "
        f"{2 * macs / conv / 1e9:.0f} GFLOP/s, {100 * 2 * macs / conv / 1e9 / peak:.0f} % of "
        f"the {peak:.0f} GFLOP/s matmul peak in this precision",
    ]
    rest = sorted(
        (e for e in events if "convolution" not in e.key and e.self_cpu_time_total > 0),
        key=lambda e: -e.self_cpu_time_total,
    )
    for e in rest[:8]:
        share = e.self_cpu_time_total / 1e6
        lines.append(f"  {e.key:28s} {share:.3f} s ({100 * share / total:.0f} %), {e.count} calls")
    return "\n".join(lines)


def train_step(model: torch.nn.Module, x, target, bf16: bool) -> float:
    """Seconds for one forward + L1 loss + backward + Adam step in train mode."""
    model.train()
    optimiser = getattr(model, "_bench_optimiser", None)
    if optimiser is None:
        optimiser = model._bench_optimiser = torch.optim.Adam(model.parameters(), 1e-4)
    optimiser.zero_grad(set_to_none=True)
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = torch.nn.functional.l1_loss(model(x), target)
    loss.backward()
    optimiser.step()
    seconds = time.perf_counter() - start
    model.eval()
    return seconds


def compare_training(args: argparse.Namespace, batch: int, size: tuple[int, int, int]) -> dict:
    """Minimum train-step seconds: the authors' fp32, ras2s fp32, ras2s bf16-mixed."""
    from ras2s.model import RAS2S
    from ras2s.precision import apply_precision

    clean = real_clean(size, args.data)
    x = torch.cat([noisy_input(clean, seed) for seed in range(batch)])
    target = torch.from_numpy(clean)[None].expand(batch, -1, -1, -1).contiguous()
    steps = {
        "authors": (load_authors_model(args.official_repo, args.weights), False),
        "fp32": (apply_precision(RAS2S(), "fp32"), False),
        "bf16-mixed": (apply_precision(RAS2S(), "fp32"), True),
    }
    for model, bf16 in steps.values():
        train_step(model, x, target, bf16)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, (model, bf16) in steps.items():
            times[name].append(train_step(model, x, target, bf16))
    return {name: min(t) for name, t in times.items()}


def run_profile(args: argparse.Namespace, size: tuple[int, int, int]) -> None:
    x = noisy_input(real_clean(size, args.data), 0)
    for which in MODELS[1:]:
        model = load(which, args)
        dtype = next(model.parameters()).dtype
        macs = conv_macs(model, x)
        print(f"ras2s --precision {which} ({dtype}), {macs / 1e9:.1f} GMAC of convolutions:")
        print(profile_breakdown(model, x, macs, matmul_peak_gflops(dtype)))


def run_memory(args: argparse.Namespace, sizes) -> None:
    print(f"{'size':>14} " + " ".join(f"{m + ' GiB':>12}" for m in MODELS))
    for size in sizes:
        row = [peak_memory(which, size, args) / 2**30 for which in MODELS]
        print(f"{'x'.join(map(str, size)):>14} " + " ".join(f"{v:12.2f}" for v in row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official-repo", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="../shared/data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default=None, help="e.g. 31x128x128,191x256x256")
    parser.add_argument("--memory", action="store_true", help="Also peak memory per model.")
    parser.add_argument(
        "--profile", default=None, metavar="BxHxW", help="Only profile our models at this size."
    )
    parser.add_argument(
        "--train-step", action="store_true", help="Only the training step (batch 8 of 31x64x64)."
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    torch.set_num_threads(args.threads)
    sizes = SIZES
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(f"torch {torch.__version__}, {args.threads} threads, min of {args.repeats} runs")
    if args.profile:
        run_profile(args, tuple(int(v) for v in args.profile.split("x")))
        return
    if args.train_step:
        best = compare_training(args, 8, (31, 64, 64))
        print("train step, batch 8 of 31x64x64 (forward, L1, backward, Adam), seconds:")
        for name, seconds in best.items():
            print(f"  {name:>10} {seconds:7.2f}  {best['authors'] / seconds:5.2f}x the authors'")
        if args.json:
            args.json.write_text(json.dumps({"train_step": best}, indent=2))
        return
    models = {which: load(which, args) for which in MODELS}
    print(
        f"{'size':>14} {'authors s':>10} {'fp32 s':>8} {'bf16 s':>8} {'fp32 x':>7} {'bf16 x':>7} "
        f"{'fp32 max|diff|':>14} {'% > 1e-4':>8} {'bf16 dB vs fp32':>15}"
    )
    rows = []
    for size in sizes:
        clean = real_clean(size, args.data)
        for model in models.values():
            timed(model, noisy_input(clean, 0))  # warm-up
        times: dict[str, list[float]] = {which: [] for which in models}
        for run in range(args.repeats):
            x = noisy_input(clean, run + 1)
            outputs = {}
            for which, model in models.items():
                seconds, outputs[which] = timed(model, x)
                times[which].append(seconds)
        from ras2s.metrics import mpsnr

        best = {which: min(t) for which, t in times.items()}
        difference = (outputs["authors"] - outputs["fp32"]).abs()
        diff, share = float(difference.max()), 100 * float((difference > 1e-4).float().mean())
        psnr = {w: mpsnr(outputs[w][0].numpy(), clean, data_range=1.0) for w in ("fp32", "bf16")}
        name = "x".join(map(str, size))
        print(
            f"{name:>14} {best['authors']:10.2f} {best['fp32']:8.2f} {best['bf16']:8.2f} "
            f"{best['authors'] / best['fp32']:7.2f} {best['authors'] / best['bf16']:7.2f} "
            f"{diff:14.2e} {share:8.3f} {psnr['bf16'] - psnr['fp32']:+15.3f}"
        )
        row = {"size": name, "seconds": best, "max_abs_diff_fp32": diff, "share": share}
        rows.append({**row, "mpsnr": psnr})
    if args.memory:
        run_memory(args, sizes)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
