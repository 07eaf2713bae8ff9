"""``layerwise stack``: AdaLayerNet, then UnIT, then LWAC on one model, every stage measured alike.

Trains the base model once (residual models with stochastic depth, as ``layerwise lwac`` does,
so that LWAC has blocks it can drop; cached in ``OUT/base/``), or loads ``--checkpoint``; then
:func:`layerwise.stack.stack_model` (the order and why: docs/stack.md). Variants, all scored on
the test split (every choice was made on validation):

``dense``, ``adalayer`` (rebuilt from its packed file), ``adalayer+unit``, ``adalayer+unit+lwac``
(the stack), and the single methods on the dense model with the same rules: ``unit``, ``lwac``
(``--no-singles`` leaves those two out; then the additivity check is not made).

Measured the same way for each: test accuracy with its Wilson interval and per-image hits;
executed MACs on ONE basis (:mod:`layerwise.stack.accounting`: UnIT's counters, in the layers
that ran; a variant without thresholds is counted through UnIT layers at ``T = 0``, which compute
the plain layer); the size of what ships (the dense fp32 ``torch.save`` file or AdaLayerNet's
packed file, plus the thresholds' and the gates' own bytes); batch-1 latency, interleaved
(median and IQR). Paired comparisons on the same test images: each stage against the previous
one and against dense. The additivity of the gains (executed MACs vs the product of the single
ratios, accuracy drop vs the sum of the single drops) is printed and stored in results.json.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .. import unit
from ..adalayer import AdaLayerConfig, Architecture, write_packed
from ..errors import LayerwiseError
from ..evidence import with_statistics
from ..lwac import LWACModel
from ..lwac.robust import residual_model_kwargs
from ..measure import artifact_size, compare_latency, count_macs
from ..models.registry import ModelConfigError
from ..results import Results, Variant, env_info, write_results
from ..stack import StackConfig, StackError, additivity, count_executed, stack_model
from ..stack.pipeline import lwac_stage, preflight, unit_stage
from ..train import TrainConfig
from ..unit.select import parse_percentile
from .common import (CommandReport, RunSpec, add_common_arguments, build_for_data, check_device, example_input,
                     fmt_count, load_data_for_model, out_dir, set_threads, spec_from_args, text_table, train_cached)

log = logging.getLogger(__name__)

NAME = "stack"
HELP = "AdaLayerNet, then UnIT, then LWAC stacked on one model; each stage measured the same way"

STACK = ("dense", "adalayer", "adalayer+unit", "adalayer+unit+lwac")
SINGLES = ("unit", "lwac")
#: (method variant, rival): each stage vs the previous one and vs dense; the singles vs dense
COMPARE = (("adalayer", "dense"), ("adalayer+unit", "adalayer"), ("adalayer+unit", "dense"),
           ("adalayer+unit+lwac", "adalayer+unit"), ("adalayer+unit+lwac", "dense"),
           ("unit", "dense"), ("lwac", "dense"))
UNIT_LATENCY_NOTE = ("UnIT layers with thresholds run UnIT's torch reference path (a simulation that builds "
                     "the skip masks per call; PyTorch has no skipping kernel): compare these latencies with "
                     "each other, not with the plain models'")


@dataclass
class StackOptions:
    epochs: int = 10          # base model training (no --checkpoint)
    batch_size: int = 64
    drop_path: float = 0.2    # stochastic depth of a residual base model (LWAC drops blocks)
    latency_n: int = 100
    latency_inputs: int = 50  # test inputs the timed calls cycle through (LWAC decides per input)
    singles: bool = True
    quick: bool = False


@dataclass
class StackOutput:
    out_dir: Path
    results_path: Path
    results: Results
    additivity: dict | None


def _base_model(spec: RunSpec, data, opts: StackOptions, directory: Path, progress
                ) -> tuple[nn.Module, dict, dict]:
    """(trained model, its build options for the packed file's loader, provenance)."""
    kwargs = residual_model_kwargs(opts.drop_path)
    try:
        model = build_for_data(spec, data, **kwargs)
    except ModelConfigError:  # not a residual zoo model: built plainly
        kwargs = {}
        model = build_for_data(spec, data)
    preflight(model)  # a model a stage cannot take is refused now, not after training
    if spec.checkpoint is not None:
        return model.eval(), kwargs, {"source": f"--checkpoint {spec.checkpoint}"}
    base_dir = directory / "base"
    ck = base_dir / "checkpoint.pt"
    config = TrainConfig(epochs=opts.epochs, batch_size=opts.batch_size, optimizer="adam", lr=3e-3,
                         schedule="cosine", seed=spec.seed, device=spec.device, augment=spec.augment)
    res = train_cached(model, data, config, base_dir, progress)
    if res is None:
        return model.eval(), kwargs, {"source": f"cached {ck}"}
    if res.interrupted:
        raise LayerwiseError(f"base training interrupted; rerun the same command to resume from {base_dir}")
    return model.eval(), kwargs, {"source": f"trained here -> {ck}", "config": asdict(config),
                                  "training": "stochastic depth" if kwargs else "plain"}


def _t0(model: nn.Module) -> nn.Module:
    """A copy with UnIT layers at threshold 0: the plain model's outputs, counted on UnIT's basis."""
    return unit.convert(copy.deepcopy(model)).model.eval()


class _Cycle:
    """For compare_latency: each call runs the model on the next of ``inputs`` (LWAC decides per input)."""

    def __init__(self, model, inputs):
        self.model, self.inputs, self.k = model, inputs, 0

    def __call__(self, *_):
        x = self.inputs[self.k]
        self.k = (self.k + 1) % len(self.inputs)
        return self.model(x)


def _network(m: nn.Module) -> nn.Module:
    return m.model if isinstance(m, LWACModel) else m


def run_stack(spec: RunSpec, cfg: StackConfig, opts: StackOptions, progress=None) -> StackOutput:
    t_start = time.perf_counter()
    device = check_device(spec.device)
    cfg.validate()
    threads = set_threads(spec.threads)
    data = load_data_for_model(spec)
    if len(data.val) == 0:
        raise StackError(f"{data.label} has no validation split: every stage calibrates on validation data; "
                         "use a dataset with one")
    directory = out_dir(spec, "stack")
    base, kwargs, base_info = _base_model(spec, data, opts, directory, progress)
    x1 = example_input(data, 1, device)
    arch = Architecture(spec.model, tuple(data.input_shape), data.num_classes, kwargs)
    macs = int(count_macs(base, x1).total)
    dense_bytes = artifact_size(base, path=directory / "dense.pt").bytes

    # ---- the stack, and the single methods under the same rules (validation only)
    stacked, rep = stack_model(base, data, arch=arch, example_input=x1, config=cfg, device=device,
                               threads=threads, cache_dir=directory / "cache", progress=progress)
    packed_path = write_packed(directory / "adalayer.lwpk", rep.packed)
    packed_bytes = packed_path.stat().st_size
    models: dict[str, nn.Module] = {"dense": _t0(base), "adalayer": _t0(rep.models["adalayer"]),
                                    "adalayer+unit": rep.models["adalayer+unit"], "adalayer+unit+lwac": stacked}
    info: dict[str, dict] = {"adalayer": rep.adalayer, "adalayer+unit": rep.unit, "adalayer+unit+lwac": rep.lwac}
    if opts.singles:
        models["unit"], info["unit"] = unit_stage(base, data, cfg, device=device)
        models["lwac"], info["lwac"] = lwac_stage(models["dense"], data, x1, cfg, device=device, threads=threads)
    thresholded = {"unit", "adalayer+unit", "adalayer+unit+lwac"}
    thr_bytes = {k: info[k]["threshold_bytes"] for k in ("unit", "adalayer+unit") if k in info}
    size = {"dense": dense_bytes, "adalayer": packed_bytes, "adalayer+unit": packed_bytes + thr_bytes["adalayer+unit"],
            "adalayer+unit+lwac": packed_bytes + thr_bytes["adalayer+unit"] + rep.lwac["gate_bytes"]}
    if opts.singles:
        size.update(unit=dense_bytes + thr_bytes["unit"], lwac=dense_bytes + info["lwac"]["gate_bytes"])

    # ---- test: hits and executed MACs from one pass per variant (batch 1 for LWAC)
    executed, hits = {}, {}
    for k, m in models.items():
        executed[k], hits[k] = count_executed(m, data.test, macs=macs, device=device)

    # ---- batch-1 latency, interleaved, cycling over the same test inputs; UnIT off where T = 0
    for k, m in models.items():
        if k not in thresholded:
            unit.set_enabled(_network(m), False)  # plain PyTorch layers: exactly the plain model's ops
    inputs = [data.test[i][0].unsqueeze(0).to(device) for i in range(min(len(data.test), opts.latency_inputs))]
    lat = compare_latency({k: (_Cycle(m, inputs), x1) for k, m in models.items()}, n=opts.latency_n,
                          warmup=max(3, opts.latency_n // 10), threads=threads)
    for m in models.values():
        unit.set_enabled(_network(m), True)

    # ---- results
    variants = []
    order = [k for k in (*STACK, *SINGLES) if k in models]
    for k in order:
        em = executed[k]
        extra = {"accuracy_split": "test", "executed": em.to_json(),
                 "macs_executed_basis": "UnIT's counters in the layers that ran: both operands nonzero and |x*w| > T "
                                        "(T = 0 where no thresholds), + LWAC controller MACs",
                 "size_source": _size_source(k), "latency_kind": ("unit-reference-simulation" if k in thresholded
                                                                  else "plain PyTorch layers"),
                 "latency_inputs": len(inputs),
                 "peak_mem_bytes": "not measured by layerwise stack", "energy_j": "not measured by layerwise stack"}
        if k in thresholded:
            extra["latency_note"] = UNIT_LATENCY_NOTE
        if k in info:
            extra["stage"] = {kk: v for kk, v in info[k].items() if kk != "sweep"}
        if k == "dense":
            extra["base"] = base_info
        if k == "adalayer":
            extra["packed_path"] = str(packed_path)
        variants.append(Variant(name=k, accuracy=int(hits[k].sum()) / hits[k].numel(),
                                macs=macs + em.controller_macs, macs_executed=int(round(em.executed)),
                                params=int(sum(int(torch.count_nonzero(p)) for p in _network(models[k]).parameters())),
                                size_bytes=int(size[k]), latency_ms=lat[k].to_json(), extra=extra))
    adds = None
    if opts.singles:
        row = {k: {"executed": executed[k].executed, "accuracy": next(v.accuracy for v in variants if v.name == k)}
               for k in models}
        adds = additivity(row["dense"], {k: row[k] for k in ("adalayer", "unit", "lwac")}, row["adalayer+unit+lwac"])
        adds["latency_note"] = UNIT_LATENCY_NOTE
    stack_v = next(v for v in variants if v.name == "adalayer+unit+lwac")
    stack_v.extra["stack"] = {**rep.to_json(), "config": {**asdict(cfg), "adalayer": cfg.adalayer.to_json()},
                              "options": asdict(opts), "additivity": adds}
    stack_v.extra["stack"]["lwac"] = {k: v for k, v in rep.lwac.items() if k != "sweep"}
    results = Results(method="stack", model=spec.model, dataset=data.label, env=env_info(device, threads, spec.seed),
                      variants=variants, quick=opts.quick)
    results = with_statistics(results, hits, compare=[p for p in COMPARE if all(x in models for x in p)],
                              seed=spec.seed)
    path = write_results(directory, results)
    log.info("stack: done in %.0f s", time.perf_counter() - t_start)
    return StackOutput(directory, path, results, adds)


def _size_source(name: str) -> str:
    parts = ["the packed file (.lwpk)" if name.startswith("adalayer") else "torch.save(state_dict), fp32"]
    if "unit" in name:
        parts.append("+ fp32 thresholds (4 bytes per threshold group)")
    if "lwac" in name:
        parts.append("+ the gates: controller weights and fp32 R_i, C_i per unit, gamma, lambda, threshold")
    return " ".join(parts)


# ----------------------------------------------------------------------------- CLI

def add_arguments(p) -> None:
    add_common_arguments(p, training=True)
    p.add_argument("--budget", type=float, default=0.15,
                   help="AdaLayerNet: packed size as a fraction of the dense fp32 file")
    p.add_argument("--finetune-epochs", type=int, default=3, help="AdaLayerNet: fine-tune epochs after compression")
    p.add_argument("--percentile", default="auto",
                   help="UnIT: percentile of |x*w| for the thresholds, or 'auto': the largest --sweep percentile "
                        "within --max-drop of the stage's input on validation")
    p.add_argument("--sweep", default=None, help="UnIT: percentiles tried by auto (default 10,20,30,40,60)")
    p.add_argument("--groups", type=int, default=1, help="UnIT: threshold groups per layer")
    p.add_argument("--policy", choices=("heuristic", "neural"), default="heuristic",
                   help="LWAC: the training-free rule or the per-input neural controller")
    p.add_argument("--max-drop", type=float, default=0.5, metavar="PT",
                   help="validation accuracy drop each stage may cost against its input, in percentage points "
                        "(UnIT's percentile, LWAC's lambda)")
    p.add_argument("--epochs", type=int, default=10, help="base model training epochs (no --checkpoint)")
    p.add_argument("--drop-path", type=float, default=0.2, help="stochastic depth of a residual base model")
    p.add_argument("--latency-n", type=int, default=100, help="timed calls per variant (interleaved)")
    p.add_argument("--no-singles", action="store_true",
                   help="leave out unit and lwac alone on the dense model (no additivity check)")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run (1 epoch, 1 fine-tune "
                                                        "epoch, short sweeps, few timings); marked quick")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise LayerwiseError(f"--sweep {text!r}: give comma-separated percentiles, e.g. 10,20,40") from exc


def run_command(args, progress=None) -> CommandReport:
    ada = AdaLayerConfig(finetune_epochs=args.finetune_epochs, seed=args.seed)
    cfg = StackConfig(budget=args.budget, adalayer=ada, percentile=parse_percentile(args.percentile),
                      groups=args.groups, policy=args.policy, max_drop=args.max_drop)
    if args.sweep:
        cfg.sweep = _floats(args.sweep)
    opts = StackOptions(epochs=args.epochs, drop_path=args.drop_path, latency_n=args.latency_n,
                        singles=not args.no_singles, quick=args.quick)
    if args.quick:
        ada.finetune_epochs, opts.epochs, opts.latency_n, opts.latency_inputs = 1, 1, 10, 10
        cfg.grid = 5
        if not args.sweep:
            cfg.sweep = (20.0, 40.0)
    out = run_stack(spec_from_args(args), cfg, opts, progress)
    return CommandReport(format_report(out, cfg))


def _ci(v: Variant) -> str:
    ci = v.accuracy_ci
    return f"{100 * ci['low']:.1f}-{100 * ci['high']:.1f}" if ci else "-"


def format_report(out: StackOutput, cfg: StackConfig) -> str:
    res = out.results
    v = {x.name: x for x in res.variants}
    dense = v["dense"]
    rows = []
    for x in res.variants:
        lt = x.latency_ms
        rows.append([x.name, f"{100 * x.accuracy:.2f}", _ci(x), f"{100 * (x.accuracy - dense.accuracy):+.2f}",
                     fmt_count(x.macs_executed), f"{x.macs_executed / dense.macs_executed:.3f}",
                     fmt_count(int(round(x.extra['executed']['run_macs']))), f"{x.size_bytes:,}",
                     f"{x.size_bytes / dense.size_bytes:.4f}",
                     f"{lt['median']:.3f} ± {lt['iqr']:.3f}{' (!)' if lt['iqr'] > lt['median'] else ''}",
                     "sim" if x.extra["latency_kind"].startswith("unit") else "plain"])
    st = v["adalayer+unit+lwac"].extra["stack"]
    lines = [
        f"Stack on {res.model} / {res.dataset}{' (--quick: a smoke run, not a result)' if res.quick else ''}: "
        f"AdaLayerNet (your --budget {cfg.budget:g}) -> UnIT (percentile {st['unit']['percentile']:g}, "
        f"{st['unit']['rule'].split(':')[0]}) -> LWAC ({st['lwac']['policy']}, lambda {st['lwac']['lam']:.4g}); "
        f"each stage within your --max-drop {cfg.max_drop:g} pt of its input on validation",
        "",
        text_table(rows, ["variant", "acc %", "95% CI", "Δ pt", "MACs exec", "exec/dense", "MACs in run layers",
                          "size B", "size/dense", "latency b=1 ms (median ± IQR)", "path"], left=1),
        "(test accuracy, Wilson 95 % interval; MACs per inference on one basis: UnIT's counters in the layers "
        "that ran, both operands nonzero and above the threshold; 'MACs in run layers': every MAC of the "
        "layers that ran (LWAC's count); latency 'sim': " + UNIT_LATENCY_NOTE
        + "; (!): the spread (IQR) is wider than the median, the machine was busy or the path varies per input)",
        "",
        "Paired on the same test images (bootstrap 95 % CI, exact McNemar):",
        *(f"  {c['verdict']}" for c in res.comparisons),
    ]
    a = out.additivity
    if a is not None:
        r = a["executed_ratio_single"]
        lines += ["", "Do the gains add up?",
                  f"  executed MACs / dense: adalayer {r['adalayer']:.3f} x unit {r['unit']:.3f} x lwac "
                  f"{r['lwac']:.3f} = {a['executed_ratio_predicted_product']:.3f} predicted if independent; "
                  f"the stack measures {a['executed_ratio_stack']:.3f} ({a['stack_over_product']:.2f}x the "
                  f"product: {'the savings overlap' if a['stack_over_product'] > 1.05 else 'they compound' if a['stack_over_product'] > 0.95 else 'more than the product'})",
                  f"  test accuracy drop: adalayer {a['drop_pt_single']['adalayer']:+.2f} + unit "
                  f"{a['drop_pt_single']['unit']:+.2f} + lwac {a['drop_pt_single']['lwac']:+.2f} = "
                  f"{a['drop_pt_sum']:+.2f} pt summed; the stack drops {a['drop_pt_stack']:+.2f} pt"]
    lines += ["", "stage seconds: " + ", ".join(f"{k} {s:.0f}" for k, s in st["seconds"].items()),
              f"packed file {v['adalayer'].extra['packed_path']} ({v['adalayer'].size_bytes:,} bytes)",
              f"wrote {out.results_path}"]
    return "\n".join(lines)
