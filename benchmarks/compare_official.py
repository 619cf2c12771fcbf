"""Speed, memory and output agreement of ras2s versus the authors' RAS2S code, side by side.

The authors' code is NOT part of this repository: check out MIV-XJTU/RAS2S somewhere
else and pass its folder (the one holding ``basic/``). Both models get the authors'
checkpoint and the same seeded inputs, in one process with the same thread count; each
size is timed as the median of ``--repeats`` runs after one warm-up, alternating the two
models so that machine noise hits both alike. Peak memory is measured per model and size
in a fresh subprocess: the growth of peak resident memory over the loaded model and input
(the kernel's peak mark is reset first, so import-time peaks do not hide it).

    python benchmarks/compare_official.py --official-repo ../RAS2S \
        --weights ../shared/reference/s2s_official.pth

Needs ``einops`` (the authors' code imports it: ``pip install einops``). Their modules
also import ``thop``, ``seaborn`` and ``matplotlib`` at import time without using them in
the forward pass; missing ones are replaced by empty stand-ins.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

SIZES = [(31, 64, 64), (31, 128, 128), (31, 256, 256), (31, 512, 512), (191, 256, 256)]


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


def load_ours(weights: Path) -> torch.nn.Module:
    from ras2s.weights import load_model

    return load_model(weights)


def timed(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        start = time.perf_counter()
        y = model(x)
        return time.perf_counter() - start, y


def seeded_input(bands: int, h: int, w: int) -> torch.Tensor:
    rng = np.random.default_rng(2024)
    return torch.from_numpy(rng.random((1, bands, h, w), dtype=np.float32))


MEMORY_CHILD = """
import resource, sys, torch
from pathlib import Path
sys.path.insert(0, {here!r})
from compare_official import load_authors_model, load_ours, seeded_input
torch.set_num_threads({threads})
if {which!r} == 'authors':
    model = load_authors_model(Path({repo!r}), Path({weights!r}))
else:
    model = load_ours(Path({weights!r}))
x = seeded_input({bands}, {h}, {w})

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
        which=which,
        bands=bands,
        h=h,
        w=w,
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def matmul_peak_gflops(seconds: float = 2.0) -> float:
    """Achieved float32 matmul GFLOP/s on this machine (the practical compute peak)."""
    a = torch.randn(2048, 2048)
    a @ a
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ a
        runs += 1
    return 2 * 2048**3 * runs / (time.perf_counter() - start) / 1e9


def macs_per_voxel(bands: int = 31, h: int = 64, w: int = 64) -> float:
    """Multiply-accumulates per voxel of our model, counted by hooking every convolution."""
    from ras2s.model import RAS2S

    model = RAS2S().eval()
    total = 0

    def count(module, inputs, output):
        nonlocal total
        weight = module.weight
        total += output.numel() * weight[0].numel()

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    with torch.inference_mode():
        model(torch.rand(1, bands, h, w))
    for hook in hooks:
        hook.remove()
    # The dynamic convolutions of region learning and the attention's 3-D convolution run
    # through torch.nn.functional; add them analytically (per pixel per band).
    c, r, k = 14, 3, 3
    dynamic = r * c * c * 9 + r * c * 9  # candidate filters + spatial classifier
    attention = 3 * (k + 1) * k * 9 * c  # three depth taps of the 3x3x3 convolution
    return total / (bands * h * w) + dynamic + attention


def profile_breakdown(model: torch.nn.Module, x: torch.Tensor) -> str:
    """Self CPU seconds of one forward pass: total, 3-D convolution, 2-D convolution, rest."""
    from torch.profiler import profile

    with torch.inference_mode():
        model(x)
        with profile() as prof:
            model(x)
    events = prof.key_averages()

    def seconds(match) -> float:
        return sum(e.self_cpu_time_total for e in events if match(e.key)) / 1e6

    total = seconds(lambda key: True)
    conv3d = seconds(lambda key: "conv3d" in key or "conv_dilated3d" in key)
    conv2d = seconds(lambda key: key in ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward"))
    return (
        f"total {total:.2f} s, 3-D convolution {conv3d:.2f} s, 2-D convolution {conv2d:.2f} s, "
        f"everything else {total - conv3d - conv2d:.2f} s"
    )


def train_step(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> float:
    """Seconds for one forward + L1 loss + backward in train mode (gradients left in place)."""
    model.train()
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    torch.nn.functional.l1_loss(model(x), target).backward()
    seconds = time.perf_counter() - start
    model.eval()
    return seconds


def compare_training(authors, ours, batch: int, size: tuple[int, int, int], repeats: int):
    """Median train-step seconds of both models and the largest gradient difference.

    The authors' gradients are mapped onto our parameter names with the same converter
    that loads their checkpoint; the difference is reported relative to the largest
    gradient of that tensor.
    """
    from ras2s.weights import convert_official

    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.random((batch, *size), dtype=np.float32))
    target = torch.from_numpy(rng.random((batch, *size), dtype=np.float32))
    train_step(authors, x, target), train_step(ours, x, target)  # warm-up
    t_authors, t_ours = [], []
    for _ in range(repeats):
        t_authors.append(train_step(authors, x, target))
        t_ours.append(train_step(ours, x, target))
    theirs = {
        name: (p.grad if p.grad is not None else torch.zeros_like(p))
        for name, p in authors.named_parameters()
    }
    for name, buffer in authors.named_buffers():
        theirs[name] = torch.zeros_like(buffer)
    _, mapped = convert_official(theirs, origin="authors' gradients")
    worst = 0.0
    for name, p in ours.named_parameters():
        ref = mapped[name]
        scale = float(ref.abs().max()) or 1.0
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        worst = max(worst, float((grad - ref).abs().max()) / scale)
    return statistics.median(t_authors), statistics.median(t_ours), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official-repo", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default=None, help="e.g. 31x64x64,31x128x128")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--profile",
        default=None,
        metavar="BxHxW",
        help="Only a torch.profiler breakdown of one forward pass of each model at this size.",
    )
    parser.add_argument(
        "--memory-only", action="store_true", help="Only the peak-memory column (no timing)."
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--train-step",
        action="store_true",
        help="Also time one training step (forward + backward, batch 8 of 31x64x64).",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = SIZES
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    if args.profile:
        size = tuple(int(v) for v in args.profile.split("x"))
        x = seeded_input(*size)
        models = {
            "authors": load_authors_model(args.official_repo, args.weights),
            "ras2s": load_ours(args.weights),
        }
        for name, model in models.items():
            print(f"{name}: " + profile_breakdown(model, x))
        return
    if args.memory_only:
        print(
            f"{'size':>14} {'authors GiB':>11} {'ras2s GiB':>9} {'ratio':>6} {'ras2s B/voxel':>13}"
        )
        for size in sizes:
            mem_a, mem_o = peak_memory("authors", size, args), peak_memory("ours", size, args)
            name = "x".join(map(str, size))
            voxels = size[0] * size[1] * size[2]
            print(
                f"{name:>14} {mem_a / 2**30:11.2f} {mem_o / 2**30:9.2f} {mem_a / mem_o:6.2f} "
                f"{mem_o / voxels:13.0f}"
            )
        return
    authors, ours = load_authors_model(args.official_repo, args.weights), load_ours(args.weights)
    macs = macs_per_voxel()
    peak = matmul_peak_gflops()
    print(f"torch {torch.__version__}, threads {args.threads}, matmul peak {peak:.1f} GFLOP/s")
    print(f"ras2s MACs per voxel: {macs:,.0f}")
    header = (
        "size",
        "authors s",
        "ras2s s",
        "ratio",
        "authors GiB",
        "ras2s GiB",
        "max|diff|",
        "ras2s GFLOP/s",
        "% of peak",
    )
    print("{:>14} {:>10} {:>9} {:>6} {:>11} {:>9} {:>10} {:>13} {:>9}".format(*header))
    rows = []
    for size in sizes:
        x = seeded_input(*size)
        timed(authors, x)
        timed(ours, x)
        t_authors, t_ours = [], []
        for _ in range(args.repeats):
            t, y_authors = timed(authors, x)
            t_authors.append(t)
            t, y_ours = timed(ours, x)
            t_ours.append(t)
        diff = float((y_authors - y_ours).abs().max())
        sa, so = statistics.median(t_authors), statistics.median(t_ours)
        voxels = x.numel()
        gflops = 2 * macs * voxels / so / 1e9
        mem_a = mem_o = float("nan")
        if not args.no_memory:
            mem_a = peak_memory("authors", size, args) / 2**30
            mem_o = peak_memory("ours", size, args) / 2**30
        name = "x".join(map(str, size))
        print(
            f"{name:>14} {sa:10.2f} {so:9.2f} {sa / so:6.2f} {mem_a:11.2f} {mem_o:9.2f} "
            f"{diff:10.2e} {gflops:13.1f} {100 * gflops / peak:9.1f}"
        )
        rows.append(
            {
                "size": name,
                "authors_s": sa,
                "ras2s_s": so,
                "ratio": sa / so,
                "authors_gib": mem_a,
                "ras2s_gib": mem_o,
                "max_abs_diff": diff,
            }
        )
    report = {"peak_gflops": peak, "macs_per_voxel": macs, "rows": rows}
    if args.train_step:
        ta, to, worst = compare_training(authors, ours, 8, (31, 64, 64), args.repeats)
        print(
            f"train step, batch 8 x 31x64x64: authors {ta:.2f} s, ras2s {to:.2f} s, "
            f"ratio {ta / to:.2f}, max gradient difference {worst:.1e} (relative to each "
            "tensor's largest gradient)"
        )
        report["train_step"] = {
            "authors_s": ta,
            "ras2s_s": to,
            "ratio": ta / to,
            "grad_diff": worst,
        }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
