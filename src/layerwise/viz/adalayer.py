"""AdaLayerNet figures (paper Figs. 2-6), matplotlib object API only, one function per figure.

Each takes the per-layer plan rows (``LayerPlan.to_json()`` dicts: name, params, macs,
prune_ratio, bits, accuracy_contribution, params_after) and a path, and returns the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib import cm, colormaps, colors
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

_AXES = ("params", "MACs", "prune %", "bits", "acc. contribution")


def _short(name: str) -> str:
    return name.replace("residual.", "").replace("shortcut.", "sc.").replace("layer", "L")


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def layer_fingerprint(rows: list[dict], path: str | os.PathLike, *, max_layers: int = 12) -> Path:
    """Fig. 2: one polar polygon per layer over params, MACs, prune %, bits and accuracy contribution,
    each axis normalised by its maximum over the layers (bits by B_max = max bits)."""
    rows = rows[:max_layers] if len(rows) <= max_layers else [rows[int(i)] for i in
                                                               np.linspace(0, len(rows) - 1, max_layers)]
    vals = np.array([[r["params"], r["macs"], r["prune_ratio"], r["bits"], r["accuracy_contribution"]]
                     for r in rows], dtype=float)
    top = vals.max(axis=0)
    top[top == 0] = 1.0
    vals = vals / top
    angles = np.linspace(0, 2 * np.pi, len(_AXES), endpoint=False)
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot(projection="polar")
    cmap = colormaps["viridis"]
    for i, (r, v) in enumerate(zip(rows, vals)):
        a = np.concatenate([angles, angles[:1]])
        vv = np.concatenate([v, v[:1]])
        c = cmap(i / max(len(rows) - 1, 1))
        ax.plot(a, vv, color=c, linewidth=1.2, label=_short(r["name"]))
        ax.fill(a, vv, color=c, alpha=0.08)
    ax.set_xticks(angles)
    ax.set_xticklabels(_AXES)
    ax.set_ylim(0, 1.05)
    ax.set_title("Layer fingerprint (each axis / its max over layers)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.05, 1.0), fontsize=7)
    return _save(fig, path)


def architecture_ribbon(rows: list[dict], path: str | os.PathLike, *, b_min: int = 4, b_max: int = 8) -> Path:
    """Fig. 3: one segment per layer; width ∝ params after, colour = bits, hatch density = prune %."""
    widths = np.array([max(r.get("params_after") or 0, 1) for r in rows], dtype=float)
    widths = widths / widths.sum()
    norm = colors.Normalize(vmin=b_min, vmax=b_max)
    cmap = colormaps["plasma"]
    fig = Figure(figsize=(12, 2.6))
    ax = fig.add_subplot()
    x = 0.0
    for r, w in zip(rows, widths):
        dens = int(round(r["prune_ratio"] * 4))
        hatch = "/" * dens if dens else None
        ax.add_patch(Rectangle((x, 0), w, 1, facecolor=cmap(norm(r["bits"])), edgecolor="black", linewidth=0.5,
                               hatch=hatch))
        if w > 0.03:
            ax.text(x + w / 2, 0.5, f"{_short(r['name'])}\n{r['bits']}b {100 * r['prune_ratio']:.0f}%",
                    ha="center", va="center", fontsize=6, rotation=90 if w < 0.06 else 0)
        x += w
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("share of parameters kept")
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label="bits", pad=0.01)
    ax.set_title("Architecture ribbon: width ∝ params after, colour = bits, hatch density = prune %")
    return _save(fig, path)


def params_before_after(rows: list[dict], path: str | os.PathLike) -> Path:
    """Figs. 4-5: parameters per layer before and after (nonzero or kept weights), thousands."""
    names = [_short(r["name"]) for r in rows]
    before = np.array([r["params"] for r in rows], dtype=float) / 1e3
    after = np.array([r.get("params_after") or 0 for r in rows], dtype=float) / 1e3
    xs = np.arange(len(rows))
    fig = Figure(figsize=(max(6, 0.45 * len(rows)), 4))
    ax = fig.add_subplot()
    ax.bar(xs - 0.2, before, 0.4, label="before")
    ax.bar(xs + 0.2, after, 0.4, label="after")
    ax.set_xticks(xs)
    ax.set_xticklabels(names, rotation=70, fontsize=7)
    ax.set_ylabel("params (K)")
    ax.set_title("Parameters per layer before and after AdaLayerNet")
    ax.legend()
    return _save(fig, path)


def budget_sweep(rows: list[dict], path: str | os.PathLike, *, dense_accuracy: float | None = None) -> Path:
    """Test accuracy against packed size / dense for ``adalayer`` and ``uniform`` over a budget sweep.
    ``rows``: dicts with ada_size_frac, ada_accuracy, uni_size_frac, uni_accuracy, budget."""
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    rows = sorted(rows, key=lambda r: r["budget"])
    ax.plot([100 * r["ada_size_frac"] for r in rows], [100 * r["ada_accuracy"] for r in rows], "o-",
            label="adalayer")
    ax.plot([100 * r["uni_size_frac"] for r in rows], [100 * r["uni_accuracy"] for r in rows], "s--",
            label="uniform")
    for r in rows:
        ax.annotate(f"{r['budget']:g}", (100 * r["ada_size_frac"], 100 * r["ada_accuracy"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    if dense_accuracy is not None:
        ax.axhline(100 * dense_accuracy, color="grey", lw=0.8, ls=":", label="dense fp32")
    ax.set_xlabel("packed file size, % of dense fp32")
    ax.set_ylabel("test accuracy, %")
    ax.set_title("AdaLayerNet vs uniform over size budgets")
    ax.legend(fontsize=8)
    return _save(fig, path)
