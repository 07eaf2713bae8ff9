"""AdaLayerNet vs uniform over size budgets, on ONE base model, in one run.

    python bench/adalayer_budget_sweep.py --model resnet20 --dataset digits --size 32 --channels 3 \
        --checkpoint runs/compress-resnet20-digits/base/checkpoint.pt [--budgets 0.15,0.10,0.07,0.05]
    python bench/adalayer_budget_sweep.py ... --compare-probes   # the evidence behind the default A_l

Reuses ``layerwise compress``'s base model (--checkpoint, else DIR/base/checkpoint.pt, trained once)
and its sensitivity cache (DIR/cache, DIR = --out or runs/compress-MODEL-DATASET). For every budget:
``adalayer`` (eq. 1-6, fine-tuned) and ``uniform`` (one ratio + one bit width at adalayer's packed
size, same fine-tune), test accuracy of the baked models (== the models rebuilt from the packed
files, bit for bit), packed size / dense fp32 size and the gap adalayer - uniform. Infeasible
budgets are skipped with the BudgetError message. Accuracy and sizes are deterministic (seeded),
so a loaded machine changes only the wall time. Writes DIR/budget_sweep.json and
DIR/budget_sweep.png (--name changes the stem).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time

from layerwise.adalayer import AdaLayerConfig, Architecture, compress_model
from layerwise.adalayer.budget import BudgetError
from layerwise.adalayer.pipeline import analyse
from layerwise.experiments.common import (add_common_arguments, example_input, load_data_for_model, out_dir,
                                          set_threads, spec_from_args, text_table)
from layerwise.experiments.compress_run import CompressOptions, _base_model, fit_uniform
from layerwise.measure import artifact_size
from layerwise.storage import atomic_write_json
from layerwise.train import evaluate
from layerwise.viz.adalayer import budget_sweep

PROBES = [  # (label, probe_ratio, probe_bits, metric, normalisation)
    ("50%/3b acc max (old)", 0.5, 3, "accuracy", "max"),
    ("50%/3b loss log", 0.5, 3, "loss", "log"),
    ("80%/2b acc max", 0.8, 2, "accuracy", "max"),
    ("80%/2b loss max", 0.8, 2, "loss", "max"),
    ("80%/2b loss log (new)", 0.8, 2, "loss", "log"),
]


def compare_probes(base, data, x1, cache_dir) -> str:
    cols, importance = {}, {}
    for label, ratio, bits, metric, norm in PROBES:
        cfg = AdaLayerConfig(probe_ratio=ratio, probe_bits=bits, probe_metric=metric, normalisation=norm)
        an = analyse(base, data, x1, cfg, cache_dir=cache_dir)
        cols[label], importance[label] = an.accuracy_contribution, an.importance
    names = list(next(iter(cols.values())))
    rows = [[n] + [f"{cols[c][n]:.3f}/{importance[c][n]:.3f}" for c in cols] for n in names]
    rows.append(["layers with A < 0.01"] + [str(sum(v < 0.01 for v in cols[c].values())) for c in cols])
    rows.append(["layers with I = 0"] + [str(sum(v <= 0 for v in importance[c].values())) for c in cols])
    return "A_l / I_l per probe option (val split):\n" + text_table(rows, ["layer"] + list(cols), left=1)


def _payload(spec, data, dense_acc, dense_bytes, cfg, rows, skipped, done) -> dict:
    return {"model": spec.model, "dataset": data.label, "dense_accuracy": dense_acc, "dense_bytes": dense_bytes,
            "config": cfg.to_json(), "rows": rows, "skipped": skipped, "accuracy_split": "test", "complete": done}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p)
    p.add_argument("--budgets", default="0.15,0.10,0.07,0.05")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--uniform-top", type=int, default=0, help="0: fine-tune every same-size candidate")
    p.add_argument("--b-min", type=int, default=4)
    p.add_argument("--name", default="budget_sweep", help="output files DIR/NAME.json and DIR/NAME.png")
    p.add_argument("--compare-probes", action="store_true", help="print A_l/I_l for the probe options and exit")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    spec = spec_from_args(args)
    threads = set_threads(spec.threads)
    data = load_data_for_model(spec)
    directory = out_dir(spec, "compress")
    cache_dir = directory / "cache"
    opts = CompressOptions(uniform_top=args.uniform_top)
    base, source = _base_model(spec, data, opts, directory, None)
    base.eval()
    x1 = example_input(data, 1, spec.device)
    if args.compare_probes:
        print(compare_probes(base, data, x1, cache_dir))
        return 0
    cfg = AdaLayerConfig(finetune_epochs=args.finetune_epochs, b_min=args.b_min, seed=spec.seed)
    arch = Architecture(spec.model, tuple(data.input_shape), data.num_classes, {})
    dense_bytes = artifact_size(base).bytes
    dense_acc = evaluate(base, data.test, device=spec.device).accuracy
    analysis = analyse(base, data, x1, cfg, device=spec.device, cache_dir=cache_dir)
    rows, skipped = [], []
    for budget in [float(b) for b in args.budgets.split(",")]:
        t0 = time.perf_counter()
        try:
            ada = compress_model(copy.deepcopy(base), data, arch, budget=budget, example_input=x1, config=cfg,
                                 device=spec.device, cache_dir=cache_dir, analysis=analysis)
        except BudgetError as e:
            print(f"budget {budget:g}: skipped: {e}", flush=True)
            skipped.append({"budget": budget, "reason": str(e)})
            continue
        uni = fit_uniform(base, data, arch, cfg, opts, target_bytes=len(ada.packed), device=spec.device,
                          example_input=x1)
        row = {"budget": budget,
               "ada_accuracy": evaluate(ada.model, data.test, device=spec.device).accuracy,
               "ada_bytes": len(ada.packed), "ada_size_frac": len(ada.packed) / dense_bytes,
               "ada_bits": sorted(set(ada.allocation.bits.values())), "ada_sparsity": ada.sparsity,
               "uni_accuracy": evaluate(uni.model, data.test, device=spec.device).accuracy,
               "uni_bytes": len(uni.packed), "uni_size_frac": len(uni.packed) / dense_bytes,
               "uni_bits": uni.chosen.bits, "uni_prune_ratio": uni.chosen.prune_ratio,
               "uni_candidates": [c.to_json() for c in uni.candidates], "seconds": time.perf_counter() - t0}
        row["gap_pt"] = 100 * (row["ada_accuracy"] - row["uni_accuracy"])
        rows.append(row)
        atomic_write_json(directory / f"{args.name}.json", _payload(spec, data, dense_acc, dense_bytes, cfg, rows,
                                                                     skipped, done=False))
        print(f"budget {budget:g}: adalayer {100 * row['ada_accuracy']:.2f} % at {row['ada_size_frac']:.4f}, uniform "
              f"{100 * row['uni_accuracy']:.2f} % at {row['uni_size_frac']:.4f} ({row['seconds']:.0f} s)", flush=True)
    table = [[f"{r['budget']:g}", f"{100 * r['ada_accuracy']:.2f}", f"{r['ada_size_frac']:.4f}",
              f"{r['ada_bits'][0]}-{r['ada_bits'][-1]}", f"{100 * r['ada_sparsity']:.1f}",
              f"{100 * r['uni_accuracy']:.2f}", f"{r['uni_size_frac']:.4f}",
              f"{r['uni_bits']} b / {100 * r['uni_prune_ratio']:.1f} %", f"{r['gap_pt']:+.2f}"] for r in rows]
    print(f"\n{spec.model} / {data.label}: dense fp32 {100 * dense_acc:.2f} % test, {dense_bytes:,} bytes "
          f"({source}); {threads} threads; probe {100 * cfg.probe_ratio:.0f} %/{cfg.probe_bits} b "
          f"{cfg.probe_metric} {cfg.normalisation}")
    print(text_table(table, ["budget", "adalayer acc %", "size/dense", "bits", "sparsity %", "uniform acc %",
                             "size/dense", "uniform setting", "gap pt"], left=1))
    atomic_write_json(directory / f"{args.name}.json", _payload(spec, data, dense_acc, dense_bytes, cfg, rows,
                                                                 skipped, done=True))
    if rows:
        fig = budget_sweep(rows, directory / f"{args.name}.png", dense_accuracy=dense_acc)
        print(f"wrote {directory / f'{args.name}.json'}, {fig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
