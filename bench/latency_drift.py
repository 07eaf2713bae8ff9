"""How much one network's batch-1 latency varies on this machine, how slowly, and what that means
for a controller that holds an absolute budget by choosing among depths.

    python bench/latency_drift.py [--model resnet20] [--n 1000] [--budget 1.5] [--levels MS ...]

Times ``--n`` identical inferences (one input, one thread, ``torch.inference_mode``) by wall clock
and thread CPU time; prints the 5th-95th percentile around the median, the share within +-10 % of
the median, the autocorrelation of the series at a few lags, and then replays the series, as a
multiplicative slowdown ``t / median(t)``, through :class:`layerwise.lwac.levels.LevelController`
holding ``--budget`` ms over depth levels of ``--levels`` ms (default: levels that one run of
docs/lwac.md's contention command measured on the Fashion-MNIST ResNet-20), for several windows: the share of inferences it would put within +-10 %
of the budget if every level slowed by the same factor.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from layerwise.lwac.levels import Level, LevelController
from layerwise.models import build_model

# the levels one run of docs/lwac.md's contention command measured (Fashion-MNIST ResNet-20, heuristic policy)
LEVELS_MS = (1.903, 1.674, 1.389, 1.161, 0.882, 0.660, 0.445)


def replay(slowdown: np.ndarray, levels_ms, budget: float, window: int, hysteresis: float) -> float:
    ctl = LevelController(budget, [Level(float(i), m, float(i), (float(i), float(i))) for i, m in enumerate(levels_ms)],
                          window=window, hysteresis=hysteresis)
    out = []
    for s in slowdown:
        ms = s * ctl.level.ms
        out.append(ms)
        ctl.update(ms)
    return float(np.mean(np.abs(np.asarray(out) - budget) <= 0.1 * budget))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--shape", type=int, nargs=3, default=(1, 28, 28), metavar=("C", "H", "W"))
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--budget", type=float, default=1.5)
    p.add_argument("--levels", type=float, nargs="+", default=LEVELS_MS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(args.model, tuple(args.shape), 10).eval()
    x = torch.randn(1, *args.shape)
    wall, cpu = [], []
    load = os.getloadavg()[0]
    with torch.inference_mode():
        for _ in range(50):
            model(x)
        for _ in range(args.n):
            t0, c0 = time.perf_counter(), time.thread_time()
            model(x)
            cpu.append(1e3 * (time.thread_time() - c0))
            wall.append(1e3 * (time.perf_counter() - t0))
    print(f"{args.model} {tuple(args.shape)}, {args.n} identical batch-1 inferences, 1 thread, load average "
          f"{load:.2f} at the start")
    for name, t in (("wall", np.asarray(wall)), ("thread CPU", np.asarray(cpu))):
        med = float(np.median(t))
        p5, p95 = np.percentile(t, [5, 95])
        print(f"  {name}: median {med:.3f} ms, 5th-95th percentile {100 * (p5 / med - 1):+.0f} % / "
              f"{100 * (p95 / med - 1):+.0f} %, within +-10 % of the median {100 * np.mean(np.abs(t - med) <= 0.1 * med):.1f} %")
    t = np.asarray(wall)
    lags = ", ".join(f"lag {k} {np.corrcoef(t[:-k], t[k:])[0, 1]:.2f}" for k in (1, 2, 5, 10, 50) if k < len(t) - 2)
    print(f"  autocorrelation of the wall times: {lags}")
    s = t / np.median(t)
    print(f"replayed through the level controller, budget {args.budget:g} ms, levels {', '.join(f'{m:g}' for m in args.levels)} ms:")
    for window in (1, 3, 5, 15):
        shares = ", ".join(f"hysteresis {h:g}: {100 * replay(s, args.levels, args.budget, window, h):.1f} %"
                           for h in (0.0, 0.04))
        print(f"  window {window:2d}: within +-10 % of the budget {shares}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
