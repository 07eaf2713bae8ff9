"""Figure: MSP430 cycles of every build variant, stacked by layer, one panel per multiplier."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure


def cycles_by_layer(records: list[dict], path: str | Path, *, title: str) -> Path:
    """Stacked bars (``mspdebug sim`` cycles per layer) with the cycle model's total as a marker.

    ``records``: :meth:`layerwise.export.cycles.Measured.to_json` dicts.
    """
    muls = [m for m in ("swmul", "hwmul") if any(r["multiplier"] == m for r in records)]
    fig = Figure(figsize=(5.2 * max(len(muls), 1), 4.2))
    for i, mul in enumerate(muls):
        ax = fig.add_subplot(1, len(muls), i + 1)
        rs = [r for r in records if r["multiplier"] == mul]
        layers = list(rs[0]["per_layer"])
        bottom = [0.0] * len(rs)
        for k, layer in enumerate(layers):
            vals = [r["per_layer"].get(layer, 0) / 1e6 for r in rs]
            ax.bar(range(len(rs)), vals, bottom=bottom, label=layer, color=f"C{k % 10}")
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.plot(range(len(rs)), [r["predicted"] / 1e6 for r in rs], "k_", markersize=18,
                mew=2, label="cycle model (total)")
        base = next((r["cycles"] for r in rs if r["variant"] == "dense"), None)
        for j, r in enumerate(rs):
            if base:
                ax.annotate(f"{r['cycles'] / base:.2f}x", (j, bottom[j]), ha="center",
                            va="bottom", fontsize=7)
        ax.set_xticks(range(len(rs)), [r["variant"] for r in rs], rotation=30, fontsize=7,
                      ha="right")
        ax.set_ylabel("MCLK cycles per inference (millions)")
        ax.set_title(f"{mul}: mspdebug sim (bars), model (-)", fontsize=9)
        ax.margins(y=0.15)
        if i == len(muls) - 1:
            ax.legend(fontsize=6, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
