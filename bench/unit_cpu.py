"""Benchmark: UnIT's rule as row skipping on this CPU, against torch dense, at batch 1.

Run: ``python bench/unit_cpu.py [--reps N] [--quick] [--out runs/unit_cpu.json]``

Everything runs on ONE thread (torch and numba). Variants are timed interleaved round-robin
(:func:`layerwise.measure.compare_latency`), after warm-up, as the median and IQR of the calling
thread's CPU time (``time.thread_time``), with wall time beside it; the load average is recorded
before and after. For each case it prints the skipped share ``s`` of weight rows (measured by the
kernel, not targeted), the ideal speed-up ``1/(1-s)`` of a memory-bound product that reads only
the surviving rows, the speed-up over torch dense (``F.linear``), and the achieved fraction of the
ideal.

Cases:

1. synthetic Linear layers (400->120, 1024->1024, 4096->1024; Gaussian weights and inputs, no
   zero inputs) with a threshold set to skip 0, 25, 50, 75 and 90 % of the rows at batch 1, and
   50 % at batch 8 and 64 (a row is skipped only if every sample of the batch skips it);
2. an MLP 784-4096-1024-10 trained on digits (28x28), UnIT calibrated on the validation split
   (percentile chosen on validation within --max-drop), each Linear layer timed on real test
   inputs, and the whole network at batch 1; the row-only rule's accuracy against the per-MAC
   rule's on the same test images (paired);
3. the UnIT paper's tiny networks (tiny-cnn, widar-lenet) trained on digits: their Linear layers
   (widar-lenet calibrated with UnIT on its Linear layers only), and for tiny-cnn's convolutions
   the share of MACs a tap-skipping convolution could skip at best;
4. the cnn-lstm's LSTM input projection (W_ih x_t per time step) on basic-motions.

Trained models are cached under ``--cache`` (default runs/unit_cpu_cache).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from layerwise.data import load_dataset, make_loader
from layerwise.measure import compare_latency
from layerwise.models import build_model
from layerwise.storage import atomic_torch_save, atomic_write_json
from layerwise.train import TrainConfig, evaluate, load_weights, train
from layerwise.unit import calibrate, choose_percentile, convert, sweep
from layerwise.unit.agreement import capture_inputs
from layerwise.unit.reference import unit_linear
from layerwise.unit.rowskip import RowPlan, RowSkipLinear, rowskip_linear, to_row_skip


class Cycle:
    """A callable that runs ``fn`` on the next of several inputs each call (ignores its arg)."""

    def __init__(self, fn, inputs):
        self.fn, self.inputs, self.i = fn, inputs, 0

    def __call__(self, _x):
        x = self.inputs[self.i]
        self.i = (self.i + 1) % len(self.inputs)
        return self.fn(x)


def timed(variants: dict, reps: int) -> dict:
    lat = compare_latency({k: (fn, torch.zeros(1)) for k, fn in variants.items()}, n=reps,
                          warmup=max(5, reps // 10), threads=1)
    return {k: {"cpu_us": v.cpu_median_ms * 1e3, "cpu_iqr_us": v.cpu_iqr_ms * 1e3,
                "wall_us": v.median_ms * 1e3, "wall_iqr_us": v.iqr_ms * 1e3} for k, v in lat.items()}


def row_case(name: str, weight: torch.Tensor, bias, threshold: float, inputs: list, reps: int) -> dict:
    """Time torch dense against row skipping (row rule and per-MAC rule) over ``inputs``
    (each ``[B, in]``), interleaved."""
    t = torch.tensor([threshold])
    plan = RowPlan.build(weight, bias, t)
    skipped = [rowskip_linear(x, plan, rule="row", count=False)[1].skipped_fraction for x in inputs]
    for x in inputs[:4]:          # the per-MAC rule computes what the per-MAC reference computes
        torch.testing.assert_close(rowskip_linear(x, plan, rule="mac")[0],
                                   unit_linear(x, weight, bias, t)[0], rtol=1e-4, atol=1e-4)
    tm = timed({"torch": Cycle(lambda x: F.linear(x, weight, bias), inputs),
                "same loop, no skipping": Cycle(lambda x: rowskip_linear(x, plan, rule="none", count=False)[0],
                                                inputs),
                "row rule": Cycle(lambda x: rowskip_linear(x, plan, rule="row", count=False)[0], inputs),
                "mac rule": Cycle(lambda x: rowskip_linear(x, plan, rule="mac", count=False)[0], inputs)},
               reps)
    s = float(np.mean(skipped))
    ideal = 1.0 / (1.0 - s) if s < 1 else float("inf")
    out = {"case": name, "shape": list(weight.shape), "batch": int(inputs[0].shape[0]),
           "skipped_share": s, "ideal": ideal, "timing": tm}
    for rule in ("row rule", "mac rule"):
        speed = tm["torch"]["cpu_us"] / tm[rule]["cpu_us"]
        own = tm["same loop, no skipping"]["cpu_us"] / tm[rule]["cpu_us"]
        out[rule] = {"speedup_vs_torch": speed,
                     "speedup_wall": tm["torch"]["wall_us"] / tm[rule]["wall_us"],
                     "speedup_vs_same_loop": own, "achieved_of_ideal": own / ideal}
    return out


def threshold_for_share(weight: torch.Tensor, batches: list, share: float) -> float:
    """T that skips ``share`` of the rows, on average over ``batches`` (each ``[B, in]``)."""
    if share <= 0:
        return 0.0
    colmax = weight.abs().amax(dim=0)
    # row p of a batch is skipped iff T >= max_b |x_bp| * max_j |W[j, p]|
    v = torch.cat([(x.abs() * colmax).amax(dim=0) for x in batches])
    return float(torch.quantile(v.double(), share))


def synthetic(reps: int, quick: bool) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    rows = []
    shapes = [(4096, 1024)] if quick else [(400, 120), (1024, 1024), (4096, 1024)]
    for i, o in shapes:
        w = torch.randn(o, i, generator=g) / i ** 0.5
        b = torch.randn(o, generator=g)
        levels = (0.0, 0.5) if quick else (0.0, 0.25, 0.5, 0.75, 0.9)
        batches = [(1, s) for s in levels] + ([] if (quick or i != 4096) else [(8, 0.5), (64, 0.5)])
        for batch, share in batches:
            xs = [torch.randn(batch, i, generator=g) for _ in range(8)]
            t = threshold_for_share(w, xs, share)
            r = row_case(f"linear {i}->{o}", w, b, t, xs, reps)
            r["target_share"] = share
            rows.append(r)
            print(fmt(r), flush=True)
    return rows


# ------------------------------------------------------------------------------ real networks

class MLP(nn.Module):
    def __init__(self, d_in: int, classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(d_in, 4096), nn.ReLU(),
                                 nn.Linear(4096, 1024), nn.ReLU(), nn.Linear(1024, classes))

    def forward(self, x):
        return self.net(x)


def trained(name: str, make, data, epochs: int, cache: Path) -> nn.Module:
    model = make()
    path = cache / f"{name}.pt"
    if path.is_file():
        load_weights(model, path)
        return model.eval()
    torch.manual_seed(0)
    model = make()
    train(model, data, TrainConfig(epochs=epochs, batch_size=32, seed=0))
    atomic_torch_save(model.state_dict(), path)
    return model.eval()


def calibrated(model: nn.Module, data, max_drop: float, quick: bool, convs: bool = True
               ) -> tuple[nn.Module, float]:
    """A converted copy, percentile chosen on VALIDATION (largest within max_drop points).
    ``convs=False`` converts the Linear layers only (the convolutions stay dense)."""
    import copy

    skip = [] if convs else [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    unit = convert(copy.deepcopy(model), skip=skip).model
    to_row_skip(unit, "mac")     # the per-MAC rule, computed by the fast kernel (same results)
    val = make_loader(data.val, batch_size=256)
    dense_val = evaluate(model, data.val).accuracy
    ps = (20.0, 50.0) if quick else (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0)
    points = sweep(unit, val, lambda m: evaluate(m, data.val).accuracy, ps)
    choice = choose_percentile([(p.percentile, p.accuracy) for p in points], dense_val,
                               max_drop / 100.0)
    calibrate(unit, val, percentile=choice.percentile)
    return unit.eval(), choice.percentile


def paired(data, a: nn.Module, b: nn.Module) -> dict:
    """Accuracy of two models on the same test images, with an exact McNemar test."""
    from scipy.stats import binomtest

    ca, cb = [], []
    with torch.no_grad():
        for x, y in make_loader(data.test, batch_size=256):
            ca.append(a(x).argmax(1) == y)
            cb.append(b(x).argmax(1) == y)
    ca, cb = torch.cat(ca), torch.cat(cb)
    only_a, only_b = int((ca & ~cb).sum()), int((~ca & cb).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"n": int(ca.numel()), "acc_a": float(ca.float().mean()), "acc_b": float(cb.float().mean()),
            "only_a": only_a, "only_b": only_b, "mcnemar_p": float(p)}


def conv_tap_share(unit: nn.Module, xs: list, inputs: list[dict], tiles=(0, 8, 4)) -> dict:
    """What a Conv row-skipping variant could skip at best, by output tile size (0: the whole
    output plane): the share of MACs whose kernel tap ``w`` satisfies ``|w| * max|x| <= T`` over
    every input value the tap meets in the tile (such a tap could be skipped for the whole tile
    without looking at each MAC). Per-MAC UnIT's own skipped share is beside it."""
    out = {}
    for name, m in unit.named_modules():
        if not isinstance(m, nn.Conv2d) or not hasattr(m, "unit_threshold"):
            continue
        got = [d[name] for d in inputs]
        t_o = m.unit_threshold.repeat_interleave(m.out_channels // m.unit_threshold.numel())
        w = m.weight.detach().abs().reshape(m.out_channels, -1)            # [O, C*K*K]
        row = {}
        for tile in tiles:
            skip = tot = 0
            for x in got:
                cols = F.unfold(x.abs(), m.kernel_size, dilation=m.dilation, padding=m.padding,
                                stride=m.stride)[0]                      # [C*K*K, L]
                oh = (x.shape[2] + 2 * m.padding[0] - m.dilation[0] * (m.kernel_size[0] - 1) - 1) // m.stride[0] + 1
                ow = cols.shape[1] // oh
                grid = cols.reshape(-1, oh, ow)
                size = tile or max(oh, ow)
                tmax = F.max_pool2d(grid[None], size, ceil_mode=True)[0]   # [C*K*K, th, tw]
                npos = F.avg_pool2d(torch.ones(1, 1, oh, ow), size, ceil_mode=True, divisor_override=1)[0, 0]
                ok = (w[:, :, None, None] * tmax[None]) <= t_o[:, None, None, None]  # [O, CKK, th, tw]
                skip += float((ok * npos).sum())
                tot += float(w.numel() * oh * ow)
            row["plane" if tile == 0 else f"{tile}x{tile}"] = skip / tot
        m.reset_counts()
        with torch.no_grad():
            for x in xs:
                unit(x)
        c = m.counts
        row["per_mac_unit_threshold_share"] = c.threshold / c.total
        row["per_mac_unit_skipped_share"] = c.skipped / c.total
        out[name] = row
    return out


def network_case(label: str, model: nn.Module, data, max_drop: float, reps: int, quick: bool,
                 convs: bool = True) -> dict:
    unit, pct = calibrated(model, data, max_drop, quick, convs)
    test_x = [data.test[i][0].unsqueeze(0) for i in range(16 if quick else 64)]
    inputs = [capture_inputs(unit, x) for x in test_x]     # every UnIT layer's input, per image
    conv = conv_tap_share(unit, test_x[:16], inputs[:16])
    for name, r in conv.items():
        print(f"  {label} {name}: share of MACs a tap-skipping conv could skip (|w| max|x| <= T over "
              f"the tile): " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in r.items() if not k.startswith("per_mac"))
              + f"; per-MAC UnIT skips {100 * r['per_mac_unit_skipped_share']:.1f}% "
              f"({100 * r['per_mac_unit_threshold_share']:.1f}% by threshold)", flush=True)
    per_layer = []
    for name, m in unit.named_modules():
        if isinstance(m, RowSkipLinear):
            xs = [d[name].reshape(1, -1) for d in inputs]
            r = row_case(f"{label} {name}", m.weight.detach(), m.bias.detach(),
                         float(m.unit_threshold[0]), xs, reps)
            r["rows_skipped_by"] = "calibrated threshold on real test inputs"
            per_layer.append(r)
            print(fmt(r), flush=True)
    import copy

    # UnIT on the Linear layers only: convolutions run as torch dense convolutions here
    mac = copy.deepcopy(unit)
    row = copy.deepcopy(unit)
    to_row_skip(row, "row")
    for m in (mac, row):
        for mod in m.modules():
            if hasattr(mod, "counting"):
                mod.counting = False
            if hasattr(mod, "unit_threshold") and not isinstance(mod, RowSkipLinear):
                mod.enabled = False
    whole = timed({"torch dense": Cycle(model, test_x), "unit row-skip (mac rule)": Cycle(mac, test_x),
                   "unit row-skip (row rule)": Cycle(row, test_x)}, reps)
    for mod in list(mac.modules()) + list(row.modules()):
        if hasattr(mod, "counting"):
            mod.counting = True
    acc = paired(data, mac, row)
    print(f"  {label} whole network, batch 1, thread CPU us (IQR): "
          + ", ".join(f"{k} {v['cpu_us']:.1f} ({v['cpu_iqr_us']:.1f})" for k, v in whole.items()))
    print(f"  {label} accuracy at p{pct:g} (UnIT on Linear layers, convolutions dense): per-MAC rule {acc['acc_a']:.4f}, row rule "
          f"{acc['acc_b']:.4f} on the same {acc['n']} test images ({acc['only_a']} right only with "
          f"per-MAC, {acc['only_b']} only with rows; McNemar exact p={acc['mcnemar_p']:.3g})", flush=True)
    return {"network": label, "percentile": pct, "layers": per_layer, "whole_network": whole,
            "rule_accuracy": acc, "conv_tap_share": conv}


def lstm_case(reps: int, quick: bool, cache: Path) -> dict:
    data = load_dataset("basic-motions")
    model = trained("cnn-lstm-basic-motions",
                    lambda: build_model("cnn-lstm", data.input_shape, data.num_classes), data,
                    3 if quick else 20, cache)
    lstm = model.lstm.lstm
    w, b = lstm.weight_ih_l0.detach(), lstm.bias_ih_l0.detach()
    steps = {}

    def grab(split):
        seqs = []
        h = lstm.register_forward_pre_hook(lambda m, a: seqs.append(a[0].detach()))
        with torch.no_grad():
            for x, _ in make_loader(split, batch_size=64):
                model(x)
        h.remove()
        return torch.cat(seqs).reshape(-1, w.shape[1])       # every (sample, time step)

    val, test = grab(data.val), grab(data.test)
    nz = (val[:, :, None] * w.t()[None]).abs()
    nz = nz[nz > 0]
    out = []
    for pct in (20.0, 50.0):
        t = float(torch.quantile(nz[torch.randperm(nz.numel(), generator=torch.Generator().manual_seed(0))[:2_000_000]].double(), pct / 100))
        idx = torch.randperm(test.shape[0], generator=torch.Generator().manual_seed(1))[:64]
        xs = [test[i:i + 1] for i in idx]
        r = row_case(f"cnn-lstm W_ih x_t (p{pct:g} of val |x*w|)", w, b, t, xs, reps)
        out.append(r)
        print(fmt(r), flush=True)
    steps["cases"] = out
    steps["note"] = ("per time step at batch 1 (streaming inference); the LSTM's accuracy with a "
                     "row-skipped input projection is not measured here")
    return steps


def fmt(r: dict) -> str:
    t = r["timing"]
    d = t["same loop, no skipping"]
    return (f"  {r['case']:<38} b={r['batch']:<3} s={100 * r['skipped_share']:5.1f}% ideal {r['ideal']:5.2f}x | "
            f"torch {t['torch']['cpu_us']:7.1f} ({t['torch']['cpu_iqr_us']:.1f}) | "
            f"no-skip loop {d['cpu_us']:7.1f} ({d['cpu_iqr_us']:.1f}) | "
            + " | ".join(f"{k} {t[k]['cpu_us']:7.1f} ({t[k]['cpu_iqr_us']:.1f}) vs torch {r[k]['speedup_vs_torch']:5.2f}x "
                         f"[wall {r[k]['speedup_wall']:.2f}x], vs no-skip {r[k]['speedup_vs_same_loop']:5.2f}x "
                         f"= {100 * r[k]['achieved_of_ideal']:3.0f}% of ideal"
                         for k in ("row rule", "mac rule")))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="timed calls per variant (default 300; 60 with --quick)")
    ap.add_argument("--quick", action="store_true", help="fewer cases and calls: a smoke run")
    ap.add_argument("--max-drop", type=float, default=0.5, help="validation drop (points) for the percentile")
    ap.add_argument("--out", default="runs/unit_cpu.json")
    ap.add_argument("--cache", default="runs/unit_cpu_cache")
    args = ap.parse_args(argv)
    reps = args.reps or (60 if args.quick else 300)
    torch.set_num_threads(1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    print("thread CPU time per call in us, median (IQR); speed-up = baseline / variant; ideal = 1/(1-s), "
          "s = share of weight rows skipped; 'no-skip loop': the same compiled loop over every row; "
          "row rule: surviving rows run every MAC; mac rule: UnIT's per-MAC test inside surviving "
          "rows (exact UnIT); % of ideal = speed-up over the no-skip loop / ideal")
    print(f"unit_cpu: torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread, "
          f"{reps} interleaved calls per variant, load average {load0[0]:.2f}")
    print("synthetic Linear layers (Gaussian, threshold set for a target row share):")
    res = {"synthetic": synthetic(reps, args.quick)}

    digits = load_dataset("digits", size=28)
    d_in = int(np.prod(digits.input_shape))
    print("MLP 784-4096-1024-10 on digits 28x28:")
    mlp = trained("mlp-digits", lambda: MLP(d_in, digits.num_classes), digits, 2 if args.quick else 8, cache)
    res["mlp"] = network_case("mlp", mlp, digits, args.max_drop, reps, args.quick)
    res["tiny"] = []
    for name in ("tiny-cnn", "widar-lenet"):
        print(f"{name} on digits 28x28:")
        m = trained(f"{name}-digits", lambda n=name: build_model(n, digits.input_shape, digits.num_classes),
                    digits, 2 if args.quick else 10, cache)
        # widar-lenet's convolutions are large: its percentile is chosen with UnIT on the Linear
        # layers only (the per-MAC reference of its convolutions would take most of the run)
        res["tiny"].append(network_case(name, m, digits, args.max_drop, reps, args.quick,
                                        convs=name == "tiny-cnn"))
    print("cnn-lstm input projection on basic-motions:")
    res["lstm"] = lstm_case(reps, args.quick, cache)
    load1 = os.getloadavg()
    res["env"] = {"torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                  "threads": 1, "reps": reps, "load_average_before": load0,
                  "load_average_after": load1, "command": " ".join(["python", "bench/unit_cpu.py", *sys.argv[1:]])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, res)
    print(f"load average after {load1[0]:.2f}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
