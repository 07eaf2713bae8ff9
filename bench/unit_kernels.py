"""Benchmark: compiled UnIT kernels with skipping vs the same kernels without, per division method.

Run: ``python bench/unit_kernels.py [--reps N] [--seed S]``

For each layer shape (the tiny CNN of the UnIT paper's Table 1 at batch 1, and a 400x120 Linear
at batch 64) and each threshold level (the 50th / 80th percentile of |x*w| over the nonzero MAC
pairs, i.e. a calibrated-like threshold that skips ~50 % / ~80 % of them with exact division), it
times, interleaved round-robin in one process, after compilation and warm-up, ``--reps`` calls
each. The primary figure is the calling thread's CPU time (``time.thread_time_ns``: the kernels
are single-threaded, and time the OS gives other processes is not counted); the wall time
(``time.perf_counter_ns``) of the same calls is printed beside it; both as median and IQR:

* ``dense-kernel``: the compiled scalar loop without skipping (same loop order);
* ``skip-<division>``: the compiled skipping kernel with each division method;
* ``torch``: ``F.linear`` / ``F.conv2d`` (dense, vectorised), for reference.

The compiled kernels are called directly on prepared numpy arrays (no wrapper overhead). Torch and
numba both run on one thread.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from layerwise.unit.division import kernel_args
from layerwise.unit.kernel_timing import median_iqr_us
from layerwise.unit.kernels import conv2d_skip, linear_skip, unit_conv_kernel, unit_linear_kernel

DIVISIONS = ("exact", "bitshift", "binary_tree", "bitmask")


def layers(seed: int):
    g = torch.Generator().manual_seed(seed)

    def act(*shape):
        return torch.relu(torch.randn(*shape, generator=g))

    def weight(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    return [
        ("conv 1->6 5x5 @28x28 b1", "conv", act(1, 1, 28, 28), weight(6, 1, 5, 5)),
        ("conv 6->16 5x5 @12x12 b1", "conv", act(1, 6, 12, 12), weight(16, 6, 5, 5)),
        ("linear 256->10 b1", "linear", act(1, 256), weight(10, 256)),
        ("linear 400->120 b64", "linear", act(64, 400), weight(120, 400)),
    ]


def percentile_threshold(kind, x, w, q):
    """The q-th percentile of |x*w| over the nonzero MAC pairs (one layer-wide T)."""
    xs, ws = x.abs().reshape(-1), w.abs().reshape(-1)
    xs, ws = xs[xs > 0], ws[ws > 0]
    gx = torch.Generator().manual_seed(0)
    ix = torch.randint(0, xs.numel(), (200_000,), generator=gx)
    iw = torch.randint(0, ws.numel(), (200_000,), generator=gx)
    return float(torch.quantile(xs[ix] * ws[iw], q / 100))


def make_calls(kind, x, w, T):
    """name -> zero-argument callable, plus the skip fraction with exact division."""
    xn = np.ascontiguousarray(x.numpy())
    calls = {}
    if kind == "linear":
        wt = np.ascontiguousarray(w.t().numpy())
        bias = np.zeros(w.shape[0], np.float32)
        tg = np.array([T], np.float32)
        calls["dense-kernel"] = lambda: linear_skip(xn, wt, bias, False, tg,
                                                    *kernel_args("exact"), False)
        for d in DIVISIONS:
            a = kernel_args(d)
            calls[f"skip-{d}"] = (lambda a=a: linear_skip(xn, wt, bias, False, tg, *a, True))
        calls["torch"] = lambda: F.linear(x, w)
        counts = unit_linear_kernel(x, w, None, T).counts
    else:
        wn = np.ascontiguousarray(w.numpy())
        bias = np.zeros(w.shape[0], np.float32)
        t_out = np.full(w.shape[0], T, np.float32)
        oh = x.shape[2] - w.shape[2] + 1
        ow = x.shape[3] - w.shape[3] + 1
        geo = (1, 1, 1, 0, 0, 1, 1, oh, ow)
        calls["dense-kernel"] = lambda: conv2d_skip(xn, wn, bias, False, t_out, *geo,
                                                    *kernel_args("exact"), False)
        for d in DIVISIONS:
            a = kernel_args(d)
            calls[f"skip-{d}"] = (lambda a=a: conv2d_skip(xn, wn, bias, False, t_out, *geo, *a,
                                                          True))
        calls["torch"] = lambda: F.conv2d(x, w)
        counts = unit_conv_kernel(x, w, None, T).counts
    return calls, counts


def time_interleaved(calls, reps):
    """name -> (thread median us, thread IQR us, wall median us, wall IQR us)."""
    for f in calls.values():          # compile + warm up every variant
        for _ in range(3):
            f()
    cpu = {k: [] for k in calls}
    wall = {k: [] for k in calls}
    names = list(calls)
    for r in range(reps):
        order = names[r % len(names):] + names[:r % len(names)]   # rotate the start
        for k in order:
            w0 = time.perf_counter_ns()
            c0 = time.thread_time_ns()
            calls[k]()
            c1 = time.thread_time_ns()
            w1 = time.perf_counter_ns()
            cpu[k].append(c1 - c0)
            wall[k].append(w1 - w0)
    return {k: (*median_iqr_us(cpu[k]), *median_iqr_us(wall[k])) for k in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import numba
    print(f"torch {torch.__version__}, numba {numba.__version__}, numpy {np.__version__}, "
          f"threads 1, cpu {platform.processor() or platform.machine()}, reps {args.reps}")
    print("times: thread CPU time (time.thread_time_ns), wall time (time.perf_counter_ns) beside it")
    header = (f"{'layer':26} {'T pct':>5} {'skip%':>6} {'variant':18} {'cpu med us':>10} "
              f"{'cpu IQR':>8} {'wall med us':>11} {'wall IQR':>8} {'cpu vs dense-kernel':>19}")
    print(header)
    print("-" * len(header))
    summary = []
    for name, kind, x, w in layers(args.seed):
        for q in (50, 80):
            T = percentile_threshold(kind, x, w, q)
            calls, counts = make_calls(kind, x, w, T)
            res = time_interleaved(calls, args.reps)
            dense = res["dense-kernel"][0]
            skip = 100.0 * counts.skipped / counts.total
            for k, (med, iqr, wmed, wiqr) in res.items():
                print(f"{name:26} {q:>5} {skip:6.1f} {k:18} {med:10.1f} {iqr:8.1f} "
                      f"{wmed:11.1f} {wiqr:8.1f} {med / dense:19.2f}")
            summary.append((name, q, skip, counts.threshold / max(counts.nonzero_pairs, 1),
                            res["skip-exact"][0] / dense,
                            {d: res[f"skip-{d}"][0] / res["skip-exact"][0]
                             for d in DIVISIONS[1:]},
                            res["torch"][0] / dense))
    print()
    print("ratios (thread CPU time, median / median, same run):")
    print(f"{'layer':26} {'T pct':>5} {'skip%':>6} {'thr% of nz':>10} {'skip/dense':>10} "
          f"{'bitshift/ex':>11} {'tree/ex':>8} {'bitmask/ex':>10} {'torch/dense':>11}")
    for name, q, skip, thr, r_skip, r_div, r_torch in summary:
        print(f"{name:26} {q:>5} {skip:6.1f} {100 * thr:10.1f} {r_skip:10.2f} "
              f"{r_div['bitshift']:11.2f} {r_div['binary_tree']:8.2f} {r_div['bitmask']:10.2f} "
              f"{r_torch:11.3f}")


if __name__ == "__main__":
    main()
