"""LWAC figures (the paper's Figs. 2-6, plus latency over time under a budget). Object API only.

Each function takes plain numbers, writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


_OTHER_COLORS = ["black", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]
_FAMILY_STYLE = {"LWAC": ("tab:blue", "o"), "static drop-k": ("tab:red", "s"), "shallower nets": ("tab:green", "^")}


def accuracy_vs_latency(path, points: Sequence[dict], sweep: Sequence[dict] = (), dense_ms: float | None = None,
                        title: str = "") -> Path:
    """Fig. 2: test accuracy against measured batch-1 latency (median, IQR bars) per variant;
    ``sweep``: the cross-fitted validation sweep over lambda (accuracy vs ESTIMATED latency).
    Points with the same ``family`` (e.g. "LWAC", "static drop-k", "shallower nets") are joined
    by a line in order of latency, so the curves can be compared at equal latency."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    if sweep and dense_ms:
        xs = [p["est_latency_ratio"] * dense_ms for p in sweep]
        ax.plot(xs, [100 * p["accuracy"] for p in sweep], ".-", color="0.6",
                label="lambda sweep (validation, cross-fitted; latency estimated)")
    families: dict[str, list[dict]] = {}
    for p in points:
        if p.get("family"):
            families.setdefault(p["family"], []).append(p)
    for k, (fam, ps) in enumerate(families.items()):  # a family's operating points joined, in order of latency
        ps = sorted(ps, key=lambda q: q["latency_ms"])
        color, marker = _FAMILY_STYLE.get(fam, (f"C{k}", "o"))
        xs, ys = [q["latency_ms"] for q in ps], [100 * q["accuracy"] for q in ps]
        ax.errorbar(xs, ys, xerr=[q.get("iqr_ms", 0) / 2 for q in ps], fmt=marker + "-", color=color, capsize=3,
                    alpha=0.85, label=fam)
        for q, x, y in zip(ps, xs, ys):
            ax.annotate(q["name"], (x, y), textcoords="offset points", xytext=(4, 3), fontsize=6, color=color)
    others = [p for p in points if not p.get("family")]
    for p, color in zip(others, _OTHER_COLORS * (1 + len(others) // len(_OTHER_COLORS))):
        ax.errorbar(p["latency_ms"], 100 * p["accuracy"], xerr=p.get("iqr_ms", 0) / 2, fmt="D", capsize=3,
                    color=color, label=p["name"])
    ax.set_xlabel("batch-1 latency, median ms (bars: IQR)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "Accuracy vs latency")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def energy_per_inference(path, names: Sequence[str], joules: Sequence[float], estimated: Sequence[bool],
                         source: str = "") -> Path:
    """Fig. 3: energy per inference per variant; estimated bars are hatched and say so."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    bars = ax.bar(names, [1e3 * j for j in joules], color=["tab:blue"] + ["tab:orange"] * (len(names) - 1))
    for b, est in zip(bars, estimated):
        if est:
            b.set_hatch("//")
    ax.set_ylabel("mJ per inference")
    ax.set_title("Energy per inference" + (" (ESTIMATED)" if any(estimated) else ""))
    if source:
        ax.text(0.01, 0.98, source, transform=ax.transAxes, fontsize=6, va="top")
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    return _save(fig, path)


def unit_activation_share(path, units: Sequence[str], macs: Sequence[int], run_share_before: Sequence[float],
                          run_share_after: Sequence[float], label_after: str = "LWAC") -> Path:
    """Fig. 4: each unit's share of the executed unit MACs, dense (left) and LWAC (right)."""
    fig = Figure(figsize=(9.0, 4.4))
    total_before = sum(m * s for m, s in zip(macs, run_share_before))
    for k, (share, label) in enumerate(((run_share_before, "dense"), (run_share_after, label_after))):
        ax = fig.add_subplot(1, 2, k + 1)
        w = [m * s for m, s in zip(macs, share)]
        ran = sum(w)
        ax.pie([max(v, 1e-12) for v in w], labels=[f"{u}\n(ran {100 * s:.0f}%)" for u, s in zip(units, share)],
               textprops={"fontsize": 7}, startangle=90, counterclock=False)
        ax.set_title(f"{label}: {100 * ran / total_before:.0f}% of dense unit MACs" if total_before else label)
    return _save(fig, path)


def confusion_matrices(path, cm_before: np.ndarray, cm_after: np.ndarray, classes: Sequence[str],
                       label_after: str = "LWAC") -> Path:
    """Fig. 5: test confusion matrices, dense and LWAC side by side."""
    fig = Figure(figsize=(10.0, 4.6))
    for k, (cm, label) in enumerate(((cm_before, "dense"), (cm_after, label_after))):
        ax = fig.add_subplot(1, 2, k + 1)
        ax.imshow(cm, cmap="Blues")
        n = cm.shape[0]
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_xticks(range(n), [str(c) for c in classes], rotation=45, fontsize=7)
        ax.set_yticks(range(n), [str(c) for c in classes], fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{label} (accuracy {100 * np.trace(cm) / max(1, cm.sum()):.2f}%)")
    return _save(fig, path)


def entropy_heatmap(path, entropy: np.ndarray, units: Sequence[str], title: str = "") -> Path:
    """Fig. 6: activation entropy H(h~_i) (nats) of each test sample (rows) at each unit (columns)."""
    fig = Figure(figsize=(6.4, 5.0))
    ax = fig.add_subplot()
    im = ax.imshow(entropy, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(units)), units, rotation=45, fontsize=7)
    ax.set_ylabel("test sample")
    ax.set_title(title or "Layer-wise activation entropy (LWAC)")
    fig.colorbar(im, ax=ax, label="H (nats)")
    return _save(fig, path)


def latency_over_time(path, history: Sequence[dict], dense_ms: float, window: int = 25) -> Path:
    """Latency per inference (rolling median) against the budget target, with lambda, the
    simulated battery and the simulated contention factor below."""
    fig = Figure(figsize=(8.0, 6.0))
    ax, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    steps = np.array([h["step"] for h in history])
    lat = np.array([h["latency_ms"] for h in history])
    roll = np.array([np.median(lat[max(0, i - window + 1):i + 1]) for i in range(len(lat))])
    ax.plot(steps, lat, ",", color="0.7", label="per inference")
    ax.plot(steps, roll, color="tab:blue", label=f"rolling median ({window})")
    tgt = [h["target_ms"] if h["target_ms"] is not None else np.nan for h in history]
    ax.plot(steps, tgt, "--", color="tab:red", label="budget target")
    ax.axhline(dense_ms, color="k", lw=0.8, label="dense median")
    ax.set_ylabel("latency (ms, x simulated contention)")
    ax.set_ylim(0, 2.0 * dense_ms)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("LWAC under a changing budget and simulated resources")
    ax2.plot(steps, [h["lam"] for h in history], color="tab:green", label="lambda")
    ax2.set_ylabel("lambda")
    ax3 = ax2.twinx()
    batt = [h["battery_percent"] if h["battery_percent"] is not None else np.nan for h in history]
    ax3.plot(steps, batt, color="tab:purple", label="battery % (simulated)")
    ax3.plot(steps, [100 * (h["latency_scale"] - 1) for h in history], color="tab:orange",
             label="contention: extra latency %")
    ax3.set_ylabel("%")
    ax2.set_xlabel("inference")
    ax2.legend(fontsize=7, loc="upper left")
    ax3.legend(fontsize=7, loc="upper right")
    return _save(fig, path)
