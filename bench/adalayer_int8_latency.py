"""Benchmark: AdaLayerNet's integer execution (``adalayer-int8``) against fp32 at batch 1, one thread.

Run::

    python bench/adalayer_int8_latency.py --dir DIR --dataset digits --size 32 --channels 3 \
        [--n 1000] [--batch 1] [--engines fbgemm,x86] [--torchscript] [--out FILE.json]

``DIR`` is a ``layerwise compress`` output directory: the fp32 model is ``DIR/base/checkpoint.pt``
(or ``--checkpoint``), the compressed model ``DIR/adalayer.lwpk`` (or ``--packed``); the dataset
options must be the ones that run used (the validation split calibrates the activations, the test
split gives the accuracies). The integer model is built as the command builds it
(:func:`layerwise.adalayer.intexec.integer_model`: int8 weights = the packed codes, uint8
activations calibrated on 256 validation samples), once per quantized engine in ``--engines``.

Timing: ``torch.set_num_threads(1)``; every variant warmed up, then ``--n`` rounds in which each
variant runs once on the same batch-1 input, the order rotated each round
(:func:`layerwise.measure.compare_latency`); the median and IQR of the wall time and of the calling
thread's CPU time (``time.thread_time``) per call. On a machine shared with other jobs the thread
CPU time is the fairer figure (time the scheduler gave to other processes is not in it; cache
evictions by them still are), so the load average is recorded before and after. The speed-up is
fp32's median over the variant's median, both from the same interleaved run.

``--torchscript`` adds the fp32 and the int8 models as frozen TorchScript (``torch.jit.trace`` then
``torch.jit.freeze``: no Python between the ops, BatchNorm folded in fp32 too), which shows how much
of each eager figure is Python dispatch rather than arithmetic. Freezing copies the module, and
copying int8 weights prepacks them again for the global quantized engine, so each model is frozen
under its own engine and checked to give the same outputs as before freezing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from layerwise.adalayer import load_packed
from layerwise.adalayer.int8 import ENGINE, ENGINES, quantized_engine, quantized_ops
from layerwise.adalayer.intexec import integer_model
from layerwise.data import load_dataset
from layerwise.measure import compare_latency
from layerwise.models import build_model
from layerwise.storage import atomic_write_json
from layerwise.train import evaluate, load_weights


class _Frozen:
    """A frozen TorchScript module as a plain callable (it has no ``training`` flag to save and restore)."""

    def __init__(self, module):
        self.module = module

    def __call__(self, x):
        return self.module(x)


def _args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, help="a `layerwise compress` output directory")
    p.add_argument("--packed", type=Path, help="the .lwpk file (default DIR/adalayer.lwpk)")
    p.add_argument("--checkpoint", type=Path, help="the fp32 model (default DIR/base/checkpoint.pt)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--size", type=int)
    p.add_argument("--channels", type=int, choices=(1, 3))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=1000, help="interleaved rounds (timed calls per variant)")
    p.add_argument("--batch", type=int, default=1, help="the test input repeated to this batch size")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--engines", default=f"{ENGINE},x86", help=f"quantized engines, comma-separated, of {ENGINES}")
    p.add_argument("--torchscript", action="store_true", help="also time frozen TorchScript of fp32 and int8")
    p.add_argument("--calibration", type=int, default=256, help="validation samples for the activation ranges")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    a = p.parse_args(argv)
    if a.packed is None or a.checkpoint is None:
        if a.dir is None:
            p.error("give --dir, or both --packed and --checkpoint")
        a.packed = a.packed or a.dir / "adalayer.lwpk"
        a.checkpoint = a.checkpoint or a.dir / "base" / "checkpoint.pt"
    a.engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    bad = [e for e in a.engines if e not in ENGINES]
    if bad:
        p.error(f"--engines {','.join(bad)}: choose from {','.join(ENGINES)}")
    return a


def main(argv=None) -> int:
    a = _args(argv)
    torch.set_num_threads(1)
    packed = load_packed(a.packed)
    arch = packed.meta["arch"]
    data = load_dataset(a.dataset, size=a.size, channels=a.channels, seed=a.seed)
    if list(data.input_shape) != list(arch["input_shape"]):
        sys.exit(f"{a.packed} was compressed for input {arch['input_shape']}, the dataset options give "
                 f"{list(data.input_shape)}: pass the --size/--channels of that run")
    dense = build_model(arch["model"], tuple(arch["input_shape"]), arch["num_classes"], **arch.get("options", {}))
    load_weights(dense, a.checkpoint)
    dense.eval()
    compressed = packed.model.eval()
    bits = {t["name"].rsplit(".", 1)[0]: t["bits"] for t in packed.meta["tensors"] if t["kind"] == "quantized"}
    x1 = data.test[0][0].unsqueeze(0)

    models: dict[str, object] = {"fp32": dense, "adalayer-fp32": compressed}
    info: dict[str, dict] = {}
    for engine in a.engines:
        res = integer_model(compressed, bits, data.val, x1, samples=a.calibration, engine=engine)
        if res.model is None:
            sys.exit(f"integer model with engine {engine}: {res.reason}")
        models[f"int8-{engine}"] = res.model
        info[f"int8-{engine}"] = {"engine": engine, "executed": quantized_ops(res.model)}
    if a.torchscript:
        for name, engine in [("fp32", ENGINE), *((f"int8-{e}", e) for e in a.engines)]:
            # freezing copies the module, and a copy of int8 weights is prepacked again for the GLOBAL
            # engine: set it to the model's own, or the frozen model runs the other library's kernels
            with torch.inference_mode(), quantized_engine(engine):
                frozen = torch.jit.freeze(torch.jit.trace(models[name], x1))
                with torch.no_grad():
                    y, ref = frozen(x1), models[name](x1)
                # int8: the same integers; fp32: BatchNorm folded into the convs changes the rounding
                same = torch.equal(y, ref) if name != "fp32" else torch.allclose(y, ref, rtol=1e-4, atol=1e-4)
            if not same:
                sys.exit(f"frozen TorchScript of {name} does not reproduce its outputs")
            models[f"{name}-ts"] = _Frozen(frozen)

    acc = {k: evaluate(m, data.test).accuracy for k, m in models.items() if not k.endswith("-ts")}
    load_before = os.getloadavg()
    xb = x1.repeat(a.batch, *([1] * (x1.dim() - 1)))
    lat = compare_latency({k: (m, xb) for k, m in models.items()}, n=a.n, warmup=a.warmup, threads=1)
    load_after = os.getloadavg()

    base, base_ts = lat["fp32"], lat.get("fp32-ts")
    p10 = {k: float(np.percentile(v.cpu_samples_ms, 10)) for k, v in lat.items()}
    rows = []
    for k, v in lat.items():
        ref = "fp32-ts" if k.endswith("-ts") else "fp32"
        rows.append({"variant": k, "wall_ms": {"median": v.median_ms, "iqr": v.iqr_ms},
                     "thread_cpu_ms": {"median": v.cpu_median_ms, "iqr": v.cpu_iqr_ms, "p10": p10[k]},
                     "speedup_wall": lat[ref].median_ms / v.median_ms,
                     "speedup_thread_cpu": lat[ref].cpu_median_ms / v.cpu_median_ms,
                     "speedup_thread_cpu_p10": p10[ref] / p10[k],
                     "against": ref,
                     "test_accuracy": acc.get(k), **info.get(k, {})})
    print(f"{arch['model']} {list(arch['input_shape'])}, batch {a.batch}, 1 thread, {a.n} interleaved rounds; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; {platform.processor() or ''}")
    print(f"{'variant':16s} {'wall ms (median ± IQR)':>24s} {'thread CPU ms':>20s} {'p10':>6s} "
          f"{'speed-up: cpu':>13s} {'p10':>6s} {'wall':>6s} {'test acc %':>10s}")
    for r in rows:
        w, c = r["wall_ms"], r["thread_cpu_ms"]
        acc_text = f"{100 * r['test_accuracy']:.2f}" if r["test_accuracy"] is not None else "-"
        print(f"{r['variant']:16s} {w['median']:14.3f} ± {w['iqr']:6.3f} {c['median']:11.3f} ± {c['iqr']:6.3f} "
              f"{c['p10']:6.3f} {r['speedup_thread_cpu']:12.2f}x {r['speedup_thread_cpu_p10']:5.2f}x "
              f"{r['speedup_wall']:5.2f}x {acc_text:>10s}")
    print("(speed-up = the fp32 median (p10: 10th percentile) over the variant's, same interleaved run; -ts rows "
          "against fp32-ts; p10 is the least disturbed calls' figure on a loaded machine)")
    if a.out:
        atomic_write_json(a.out, {"command": " ".join(sys.argv), "model": arch["model"],
                                  "input_shape": arch["input_shape"], "batch": a.batch, "threads": 1, "rounds": a.n,
                                  "warmup": a.warmup, "load_average_before": load_before,
                                  "load_average_after": load_after, "torch": torch.__version__,
                                  "variants": rows})
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
