"""ELA figures: attention maps per stage (paper Figs. 6-7), KL per layer with the skipped layers
marked, and training time per epoch per variant (Fig. 4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def _stage_of(name: str) -> str:
    return name.split(".")[0]


def attention_maps(maps: Mapping[str, Mapping[str, np.ndarray]], layer_order: Sequence[str],
                   path: str | Path, title: str = "") -> Path:
    """One heat map per (variant, stage): row = attention layer, column = the stage's layer it
    attends to (mean weight over the validation set, batch and heads). Skipped layers have no row
    values; a row shorter than its position (earlier layers skipped) is aligned to the layers that
    are still active before it."""
    stages = list(dict.fromkeys(_stage_of(n) for n in layer_order))
    variants = list(maps)
    fig = Figure(figsize=(3.2 * len(stages), 2.9 * len(variants)), layout="constrained")
    axes = fig.subplots(len(variants), len(stages), squeeze=False)
    for r, variant in enumerate(variants):
        dists = maps[variant]
        for c, stage in enumerate(stages):
            names = [n for n in layer_order if _stage_of(n) == stage]
            grid = np.full((len(names), len(names)), np.nan)
            active: list[int] = []
            for i, n in enumerate(names):
                if n not in dists:
                    continue
                active.append(i)
                d = np.asarray(dists[n], dtype=float)
                cols = active[-len(d):] if len(d) <= len(active) else list(range(len(d)))
                grid[i, cols] = d
            ax = axes[r][c]
            im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
            ax.set_title(f"{variant}: {stage}", fontsize=9)
            ax.set_xlabel("attended layer", fontsize=8)
            ax.set_ylabel("attention layer", fontsize=8)
            ax.set_xticks(range(len(names)), [str(i + 1) for i in range(len(names))], fontsize=7)
            ax.set_yticks(range(len(names)), [str(i + 1) for i in range(len(names))], fontsize=7)
    fig.colorbar(im, ax=axes, shrink=0.6, label="attention weight")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return Path(path)


def kl_per_layer(events: Sequence[dict], layer_order: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Window-mean KL of each attention layer at each window end (grouped bars); the layers skipped
    at that window are hatched and marked with an x."""
    fig = Figure(figsize=(max(6.0, 0.45 * len(layer_order) + 2), 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(events), 1)
    x = np.arange(len(layer_order))
    for w, ev in enumerate(events):
        kl = ev["kl"]
        xs = [i for i, n in enumerate(layer_order) if n in kl]
        vals = [kl[layer_order[i]] for i in xs]
        skipped = set(ev["skipped"])
        pos = x[xs] + (w - (len(events) - 1) / 2) * width if xs else []
        bars = ax.bar(pos, vals, width, label=f"window {tuple(ev['window'])}")
        for b, i in zip(bars, xs):
            if layer_order[i] in skipped:
                b.set_hatch("//")
                b.set_edgecolor("black")
                ax.plot(b.get_x() + b.get_width() / 2, b.get_height(), "x", color="red", ms=7)
    ax.plot([], [], "x", color="red", label="skipped at this window")
    ax.set_xticks(x, layer_order, rotation=70, fontsize=7)
    ax.set_ylabel("KL(P_prev || P_layer), eq. (8)")
    ax.set_title(title or "KL to the previous active attention layer of the stage", fontsize=9, wrap=True)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    return Path(path)


def epoch_times(times: Mapping[str, Sequence[float]], path: str | Path, title: str = "") -> Path:
    """Training time of every epoch per variant (left) and the median with its IQR (right, Fig. 4)."""
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    names = list(times)
    for name in names:
        t = list(times[name])
        ax1.plot(range(1, len(t) + 1), t, "o-", label=name, ms=3)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training time (s)")
    ax1.legend(fontsize=7)
    med = [float(np.median(times[n])) for n in names]
    q = [np.percentile(times[n], [25, 75]) for n in names]
    err = np.array([[m - lo for m, (lo, _) in zip(med, q)], [hi - m for m, (_, hi) in zip(med, q)]])
    palette = ["#999999", "#d62728", "#1f77b4", "#2ca02c"]
    ax2.bar(names, med, yerr=err, capsize=4, color=palette[:len(names)] if len(names) <= len(palette) else None)
    for i, m in enumerate(med):
        ax2.text(i, m, f"{m:.1f}", ha="center", va="bottom", fontsize=8)
    ax2.set_ylabel("median time per epoch (s), IQR bars")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return Path(path)
