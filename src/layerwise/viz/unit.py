"""UnIT figures (paper Fig. 5-7): accuracy drop vs remaining MACs, MCU time and energy per variant.

Object API only (``Figure`` + ``savefig``); every function writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

_STYLE = {"unit": ("C0", "o"), "unit@p20": ("C9", "P"), "magnitude": ("C1", "s"), "fatrelu": ("C2", "^"),
          "unit+magnitude": ("C3", "D"), "unit+fatrelu": ("C4", "v"), "dense": ("k", "*"),
          "dense+zero-skip": ("0.45", "X"), "dense (every MAC)": ("0.75", "*")}


def accuracy_vs_macs(curves: dict[str, list[tuple[float, float]]], dense_accuracy: float,
                     path: str | Path, *, title: str = "", chosen: dict[str, tuple[float, float]] | None = None
                     ) -> Path:
    """Fig. 5: accuracy drop (pt, dense minus variant: + = worse, the sign of every table that shows
    a drop) against remaining MACs (% of dense executing every MAC).

    ``curves``: method -> ``[(remaining_macs_fraction, accuracy), ...]``; ``chosen``: method ->
    the point each variant was evaluated at (drawn larger). The star at 100 % is the dense model
    executing every MAC.
    """
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for name, pts in curves.items():
        if not pts:
            continue
        pts = sorted(pts)
        color, marker = _STYLE.get(name, ("C5", "x"))
        ax.plot([100 * m for m, _ in pts], [100 * (dense_accuracy - a) for _, a in pts],
                marker=marker, color=color, label=name, linewidth=1.2, markersize=4)
    for name, (m, a) in (chosen or {}).items():
        color, marker = _STYLE.get(name, ("C5", "x"))
        ax.plot([100 * m], [100 * (dense_accuracy - a)], marker=marker, color=color,
                markersize=10, markeredgecolor="k", linestyle="none")
    ax.plot([100], [0], marker="*", color="k", markersize=10, linestyle="none",
            label="dense (every MAC)")
    ax.axhline(0, color="0.7", linewidth=0.8)
    ax.set_xlabel("remaining MACs executed (% of dense)")
    ax.set_ylabel("accuracy drop vs dense (points, + = worse)")
    ax.set_title(title or "UnIT Fig. 5: accuracy drop (+ = worse) vs remaining MACs")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def _bars(values: dict[str, float], ylabel: str, title: str, path: str | Path, note: str,
          reference: str = "dense") -> Path:
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    names = list(values)
    colors = [_STYLE.get(n, ("C5", "x"))[0] for n in names]
    bars = ax.bar(range(len(names)), [values[n] for n in names], color=colors)
    base = values.get(reference)
    for b, n in zip(bars, names):
        label = f"{values[n]:.3g}" + (f"\n{values[n] / base:.2f}x" if base else "")
        ax.annotate(label, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                    va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.text(0.99, 0.98, note, transform=ax.transAxes, ha="right", va="top", fontsize=7, color="0.3")
    ax.margins(y=0.2)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def mcu_time(ms_per_variant: dict[str, float], path: str | Path, *, profile: str,
             reference: str = "dense") -> Path:
    """Fig. 6: modelled MCU time per inference (ms) of each variant, ratio to ``reference`` on
    the bars."""
    return _bars(ms_per_variant, "time per inference (ms, modelled)",
                 f"UnIT Fig. 6: MCU time per variant ({profile})", path,
                 f"ESTIMATE: cycle model, not a measurement; ratios vs {reference}", reference)


def mcu_energy(uj_per_variant: dict[str, float], path: str | Path, *, profile: str,
               reference: str = "dense") -> Path:
    """Fig. 7: modelled MCU energy per inference (uJ) of each variant, ratio to ``reference``."""
    return _bars(uj_per_variant, "energy per inference (uJ, modelled)",
                 f"UnIT Fig. 7: MCU energy per variant ({profile})", path,
                 f"ESTIMATE: cycle model x datasheet active power; ratios vs {reference}", reference)
