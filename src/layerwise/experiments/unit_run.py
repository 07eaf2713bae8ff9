"""``layerwise unit``: UnIT against magnitude pruning and FATReLU, measured the same way.

Trains the base model (or loads ``--checkpoint``; a trained base is cached as
``OUT/base_model.pt``), then, calibrating ONLY on the validation split and scoring on test:

* ``dense``: the base model;
* ``dense+zero-skip``: the same model on a runtime that skips MACs with a zero operand;
* ``magnitude``: global L1 magnitude pruning, 5 % per step with a fine-tune (2 epochs, Adam
  3e-4), every step recorded up to 90 % sparsity; the variant is the largest-sparsity step whose
  VALIDATION accuracy is within ``--max-drop`` points of dense;
* ``fatrelu``: FATReLU thresholds by per-layer greedy binary search on validation, run at every
  bound of a grid; for the bound ``--max-drop`` the configuration (from the searches at bounds up
  to it) that skips the most MACs on VALIDATION within the bound (monotone in the bound);
* ``unit``: UnIT at ``--percentile`` (``--groups``, ``--division``); ``auto`` (the default) is
  the largest sweep percentile whose VALIDATION accuracy is within ``--max-drop`` of the dense
  model's (:mod:`layerwise.unit.select`; test accuracy never enters the choice);
* ``unit@p20``: UnIT at the paper's fixed percentile 20 (the library default), for reference;
* ``unit+magnitude``, ``unit+fatrelu``: UnIT calibrated on the pruned / FATReLU model, its
  percentile chosen the same way on that model's validation curve (bound: total drop vs dense).

Every variant's ``macs_executed`` (and skipped share, MCU cost, the trade-off curves and the
equal-MAC comparison) is counted on ONE common basis, a runtime that skips any MAC with a zero
operand plus UnIT's threshold skips for the UnIT variants; each variant's own-runtime figures are
kept beside them (``extra.own_runtime``; :mod:`layerwise.unit.accounting`). ``macs`` is the
model's MAC count for every variant; layers a ``--groups`` conversion leaves alone are counted on
the zero-skipping runtime without thresholds. MCU time and energy come from the cycle model
(:mod:`layerwise.unit.mcu`, estimates). Also: the percentile sweep and the baselines' curves
(Fig. 5), MCU time / energy bars (Fig. 6, 7), a domain-shift table (Table 2 idea), the decision
agreement of the division approximations, UnIT under every division method (each at the
percentile chosen on its own validation curve), the agreement of the three executions, and a
compiled-kernel timing (thread CPU time, wall time beside it).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data import make_loader
from ..errors import LayerwiseError
from ..evidence import with_statistics
from ..measure import artifact_size, compare_latency, count_macs, count_params, peak_memory
from ..models import sensor_cnn1d as _cnn1d  # noqa: F401  (registers cnn1d)
from ..results import Results, Variant, env_info, write_results
from ..storage import atomic_torch_save, atomic_write_json
from ..train import TrainConfig, evaluate, load_weights, train
from ..unit import METHODS, PROFILES, calibrate, collect_products, convert, reset_counts, set_division, sweep
from ..unit.accounting import (COMMON_BASIS, CountedRun, VariantCost, count_left_alone,
                               counted_evaluate, scored, variant_cost)
from ..unit.agreement import model_agreement
from ..unit.baselines import (MagnitudeConfig, calibrate_fatrelu_bounds, iterative_magnitude_prune,
                              replace_relus, set_fatrelu_thresholds, sparsity_of)
from ..unit.counts import combine_layers
from ..unit.curves import compare_at_equal_macs
from ..unit.division_check import check_divisions
from ..unit.kernel_timing import time_model_kernels
from ..unit.select import PercentileChoice, choose_percentile, parse_percentile
from ..unit.shift import default_shifts, shifted_dataset
from ..unit.steps import calibrate_trees, measure_steps
from ..viz import unit as viz
from .common import (CommandReport, RunSpec, add_common_arguments, deprecated_alias, percentile_list, build_for_data, check_device,
                     fmt_count, load_data_for_model, out_dir, seed_everything, set_threads,
                     spec_from_args, text_table)

log = logging.getLogger(__name__)

NAME = "unit"
HELP = "UnIT inference-time MAC skipping vs magnitude pruning and FATReLU (MACs, accuracy, MCU cost)"

FIXED_PERCENTILE = 20.0   # the paper's setting and unit.calibrate's default
VARIANTS = ("dense", "dense+zero-skip", "magnitude", "fatrelu", "unit", "unit@p20",
            "unit+magnitude", "unit+fatrelu")
PLAIN_VARIANTS = ("dense", "dense+zero-skip", "magnitude", "fatrelu")
#: paired comparisons on the same test images (method variant, rival variant)
COMPARE = (("unit", "dense"), ("unit", "magnitude"), ("unit", "fatrelu"), ("unit+fatrelu", "fatrelu"))
DEFAULT_SWEEP = (5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)
QUICK_SWEEP = (10.0, 30.0, 60.0)
FATRELU_BOUNDS_PT = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
QUICK_FATRELU_BOUNDS_PT = (0.5, 5.0)


@dataclass
class UnitRunConfig:
    """Options of one ``layerwise unit`` run (CLI flags)."""

    percentile: float | None = None      # None: auto (largest val-safe sweep percentile)
    groups: int = 1
    division: str = "exact"
    sweep: tuple[float, ...] = DEFAULT_SWEEP
    epochs: int | None = None            # None: 10 for images, 40 for series
    batch_size: int | None = None        # None: 32 for images, 8 for series (30 train samples)
    mcu_profile: str = "msp430-swmul"
    max_drop: float = 0.5                # points; magnitude / FATReLU validation bound
    quick: bool = False
    shift: bool = True

    def validate(self) -> None:
        if self.percentile is not None and not 0.0 < self.percentile < 100.0:
            raise LayerwiseError(f"--percentile {self.percentile} must lie strictly between 0 and 100, e.g. 20, or be 'auto'")
        if any(not 0.0 < p < 100.0 for p in self.sweep) or not self.sweep:
            raise LayerwiseError(f"--sweep {list(self.sweep)}: give percentiles strictly between 0 and 100, e.g. 10,20,40")
        if self.division not in METHODS:
            raise LayerwiseError(f"--division {self.division!r}: use one of {', '.join(METHODS)}")
        if self.mcu_profile not in PROFILES:
            raise LayerwiseError(f"--mcu-profile {self.mcu_profile!r}: use one of {', '.join(PROFILES)}")
        if self.groups < 1:
            raise LayerwiseError(f"--groups {self.groups} must be >= 1")
        if not 0.0 <= self.max_drop < 100.0:
            raise LayerwiseError(f"--max-drop {self.max_drop} must be points in [0, 100), e.g. 0.5")


@dataclass
class Evaluated:
    """One variant: its plain (or converted) model, the counted test run and its cost."""

    name: str
    model: nn.Module
    run: CountedRun
    cost: VariantCost
    extra: dict = field(default_factory=dict)


class _Stages:
    """A progress bar over the run's stages (no-op without a progress factory)."""

    def __init__(self, progress, names: list[str]):
        self.bar = progress(None, total=len(names), desc="unit") if progress is not None else None

    def __call__(self, name: str) -> None:
        log.info("unit: %s", name)
        if self.bar is not None:
            self.bar.set_description(f"unit: {name}")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- building blocks

def _base_model(spec: RunSpec, data, cfg: UnitRunConfig, directory: Path) -> tuple[nn.Module, dict]:
    """The trained dense model: ``--checkpoint``, the cached ``OUT/base_model.pt``, or trained now."""
    epochs = cfg.epochs if cfg.epochs is not None else (40 if data.kind == "series" else 10)
    batch = cfg.batch_size if cfg.batch_size is not None else (8 if data.kind == "series" else 32)
    if spec.checkpoint is not None:
        model = build_for_data(spec, data)
        return model, {"source": f"checkpoint {spec.checkpoint}"}
    meta = {"model": spec.model, "dataset": data.label, "epochs": epochs, "batch_size": batch,
            "seed": spec.seed, "augment": spec.augment, "train_size": len(data.train)}
    cache, meta_path = directory / "base_model.pt", directory / "base_model.json"
    model = build_for_data(spec, data)
    if cache.is_file() and meta_path.is_file() and json.loads(meta_path.read_text()) == meta:
        load_weights(model, cache)
        return model, {"source": f"cached {cache}", **meta}
    seed_everything(spec.seed)
    res = train(model, data, TrainConfig(epochs=epochs, batch_size=batch, seed=spec.seed,
                                         device=spec.device, augment=spec.augment))
    if res.interrupted:
        raise LayerwiseError("training of the base model was interrupted; rerun to train it again")
    atomic_torch_save(model.state_dict(), cache)
    atomic_write_json(meta_path, meta)
    return model, {"source": f"trained here, cached at {cache}", **meta,
                   "val_accuracy": res.final_val_acc}


def _counted_plain(model: nn.Module, dataset, device: str) -> tuple[CountedRun, nn.Module]:
    """Counts of a plain model: a converted copy with thresholds 0 (dense outputs, exact counts).

    Every Linear / Conv is converted (one threshold group): a model without thresholds has no
    group constraint, and its zero operands are counted in every layer."""
    conv = convert(copy.deepcopy(model)).model
    return counted_evaluate(conv, dataset, device=device), conv


def _macs_of(name: str, run: CountedRun, model_macs: int) -> VariantCost:
    """MAC figures only (no MCU profile) of a counted run: common basis and own runtime."""
    return variant_cost(name, None, run, model_macs=model_macs, profiles=())


def _point_macs(name: str, run: CountedRun, model_macs: int) -> dict:
    """Remaining-MAC fractions of one curve point, common basis first (the curves use it)."""
    vc = _macs_of(name, run, model_macs)
    return {"remaining": vc.macs_executed / vc.macs, "macs_executed": vc.macs_executed,
            "remaining_own_runtime": vc.own.macs_executed / vc.macs,
            "macs_executed_own_runtime": vc.own.macs_executed}


def _set_division(model: nn.Module, method: str, x_val: torch.Tensor) -> None:
    """Division ``method`` on every UnIT layer; binary_tree with per-layer trees calibrated on
    the val control terms (dense inputs, so they do not depend on the thresholds)."""
    if method == "binary_tree":
        calibrate_trees(model, x_val)
    else:
        set_division(model, method)


@dataclass
class UnitSweep:
    """One model's UnIT sweep: the calibrated model at the chosen percentile and its test run."""

    model: nn.Module
    curve: list[dict]               # per percentile: val and test accuracy, remaining MACs (test)
    choice: PercentileChoice | None  # None: a fixed --percentile
    percentile: float
    run: CountedRun                 # test, at ``percentile``
    runs: dict[float, CountedRun]   # test, at every swept percentile
    products: dict | None           # the val |x*w| samples every calibration of this model reuses;
    #                                 set to None once no calibration needs them (up to 8 MB a layer,
    #                                 which would otherwise stay in the process's peak memory)


def _unit_sweep(plain: nn.Module, data, cfg: UnitRunConfig, percentiles: list[float],
                model_macs: int, device: str, dense_val_accuracy: float, x_val: torch.Tensor
                ) -> UnitSweep:
    """Convert a copy (``cfg.groups``) and sweep the percentiles: calibrate on val, score on val
    AND test.

    The percentile is ``cfg.percentile`` or, when that is ``None`` (auto), chosen by
    :func:`choose_percentile` from the (percentile, VAL accuracy) pairs alone; the model is then
    re-calibrated (on val) at the chosen percentile. Remaining MACs are on the common basis.
    """
    model = convert(copy.deepcopy(plain), groups=cfg.groups).model
    _set_division(model, cfg.division, x_val)
    val_loader = make_loader(data.val, batch_size=256)
    val_acc: list[float] = []
    left_runs: list[dict] = []
    n_test: list[int] = []
    test_hits: list[torch.Tensor] = []

    def score(m):
        # val first (recorded for the choice), then counters cleared so the point's counts are
        # the TEST evaluation's only (the layers left alone counted on the zero-skip runtime);
        # the test pass also records which test samples it got right (the point's hits)
        val_acc.append(evaluate(m, data.val, device=device).accuracy)
        reset_counts(m)
        with count_left_alone(m) as left:
            acc, n, hits = scored(m, data.test, device=device)
        left_runs.append(dict(left))
        n_test.append(n)
        test_hits.append(hits)
        return acc

    products = collect_products(model, val_loader)   # once: every percentile reads the same sample
    points = sweep(model, val_loader, score, percentiles, products=products)
    curve, runs = [], {}
    for pt, va, left, n, hits in zip(points, val_acc, left_runs, n_test, test_hits):
        per_layer = dict(pt.per_layer)
        run = CountedRun(accuracy=pt.accuracy, n=n, counts=combine_layers(per_layer.values()),
                         per_layer=per_layer, left_alone=combine_layers(left.values()),
                         left_alone_per_layer=left, hits=hits)
        runs[pt.percentile] = run
        curve.append({"percentile": pt.percentile, "val_accuracy": va, "accuracy": pt.accuracy,
                      **_point_macs("unit", run, model_macs), "thresholds": pt.thresholds})
    choice = None
    if cfg.percentile is None:
        choice = choose_percentile([(c["percentile"], c["val_accuracy"]) for c in curve],
                                   dense_val_accuracy, cfg.max_drop / 100.0)
        chosen = choice.percentile
    else:
        chosen = cfg.percentile
    calibrate(model, val_loader, percentile=chosen, products=products)  # keeps the layers' own groups
    # T = 0: UnIT's runtime still skips zero operands (the left end of its curve)
    zero, _ = _counted_plain(plain, data.test, device)
    curve.append({"percentile": 0.0, "accuracy": zero.accuracy, "thresholds": {},
                  "val_accuracy": evaluate(plain, data.val, device=device).accuracy,
                  **_point_macs("dense+zero-skip", zero, model_macs)})
    return UnitSweep(model=model, curve=sorted(curve, key=lambda c: c["percentile"]), choice=choice,
                     percentile=chosen, run=runs[chosen], runs=runs, products=products)


def _division_costs(plain: nn.Module, data, cfg: UnitRunConfig, percentiles: list[float],
                    model_macs: int, device: str, dense_val_accuracy: float, x_val: torch.Tensor,
                    main: UnitSweep) -> dict:
    """UnIT under every division method, each at ITS OWN percentile: the validation sweep run
    with that method and :func:`choose_percentile` on its val curve (``--percentile`` fixed:
    that one for all), then counted on test: accuracy, counts, MEASURED division loop steps
    (:func:`measure_steps`) and the MCU cycle model's cost (common basis).

    binary_tree uses per-layer pivot trees calibrated on val control terms."""
    val_loader = make_loader(data.val, batch_size=256)
    out = {}
    for method in METHODS:
        m = convert(copy.deepcopy(plain), groups=cfg.groups).model
        _set_division(m, method, x_val)
        choice = None
        if cfg.percentile is not None:
            p = cfg.percentile
        elif method == cfg.division and main.choice is not None:
            choice = main.choice                  # the main sweep ran with this method
            p = choice.percentile
        else:
            pts = sweep(m, val_loader, lambda mm: evaluate(mm, data.val, device=device).accuracy,
                        percentiles, products=main.products)  # dense calibration: any division
            choice = choose_percentile([(pt.percentile, pt.accuracy) for pt in pts],
                                       dense_val_accuracy, cfg.max_drop / 100.0)
            p = choice.percentile
        calibrate(m, val_loader, percentile=p, products=main.products)
        run = counted_evaluate(m, data.test, device=device)
        steps = measure_steps(m, data.test, device=device)
        if steps.divisions != run.counts.divisions:
            raise LayerwiseError(f"internal: measured {steps.divisions} divisions, counters say "
                                 f"{run.counts.divisions}")
        vc = variant_cost("unit", m, run, model_macs=model_macs, division=method,
                          division_steps=steps.average)
        out[method] = {"percentile": p,
                       "percentile_rule": "fixed (--percentile)" if choice is None else "auto (own val curve)",
                       "percentile_choice": choice.to_json() if choice is not None else None,
                       "accuracy": run.accuracy, "macs_executed": vc.macs_executed,
                       "skipped_fraction": vc.skipped_fraction, "steps": steps.to_json(),
                       "mcu": {p_: v.to_json() for p_, v in vc.mcu.items()}, "cost": vc}
    return out


# ----------------------------------------------------------------------------- the run

def run_unit(spec: RunSpec, cfg: UnitRunConfig, progress=None) -> tuple[Results, str, Path]:
    cfg.validate()
    check_device(spec.device)
    threads = set_threads(spec.threads)
    t_start = time.perf_counter()
    data = load_data_for_model(spec)   # --val-limit / --test-limit: fixed stratified subsets
    if len(data.val) < 2:
        raise LayerwiseError(f"{data.name} has {len(data.val)} validation samples; UnIT calibration "
                             "needs at least 2: use a dataset with a larger validation split")
    directory = out_dir(spec, "unit")
    stages = _Stages(progress, ["base", "dense", "unit", "magnitude", "fatrelu", "combos", "checks",
                                "latency", "shift", "figures"])
    device = spec.device
    try:
        base, base_info = _base_model(spec, data, cfg, directory)
        base.eval()
        stages("base")
        x1 = torch.stack([data.test[0][0]]).to(device)
        model_macs = int(count_macs(base, x1).total)
        val_dense = evaluate(base, data.val, device=device).accuracy
        n_val = min(len(data.val), 16 if cfg.quick else 64)
        x_val = torch.stack([data.val[i][0] for i in range(n_val)]).to(device)

        # dense --------------------------------------------------------------------------
        dense_run, dense_conv = _counted_plain(base, data.test, device)
        # the conversion every UnIT variant uses (--groups): what it converts and leaves alone
        report_conv = convert(copy.deepcopy(base), groups=cfg.groups).to_json()
        stages("dense")

        def cost(name, model, run, division="exact"):
            steps = None
            if name.startswith("unit") and division in ("bitshift", "binary_tree"):
                steps = measure_steps(model, data.test, device=device).average   # measured, not assumed
            return variant_cost(name, model, run, model_macs=model_macs, division=division,
                                division_steps=steps)

        ev: dict[str, Evaluated] = {}
        ev["dense"] = Evaluated("dense", base, dense_run, cost("dense", dense_conv, dense_run))
        ev["dense+zero-skip"] = Evaluated("dense+zero-skip", base, dense_run,
                                          cost("dense+zero-skip", dense_conv, dense_run))

        # unit --------------------------------------------------------------------------
        percentiles = sorted(set(cfg.sweep) | {FIXED_PERCENTILE}
                             | ({cfg.percentile} if cfg.percentile is not None else set()))
        us = _unit_sweep(base, data, cfg, percentiles, model_macs, device, val_dense, x_val)
        unit_model, unit_curve, unit_run = us.model, us.curve, us.run
        ev["unit"] = Evaluated("unit", unit_model, unit_run,
                               cost("unit", unit_model, unit_run, cfg.division),
                               {"percentile": us.percentile,
                                "percentile_rule": "auto (val)" if us.choice else "fixed (--percentile)",
                                "percentile_choice": us.choice.to_json() if us.choice else None})
        run20 = us.runs[FIXED_PERCENTILE]
        p20_model = copy.deepcopy(unit_model)
        calibrate(p20_model, make_loader(data.val, batch_size=256), percentile=FIXED_PERCENTILE,
                  products=us.products)
        ev["unit@p20"] = Evaluated("unit@p20", p20_model, run20,
                                   cost("unit@p20", p20_model, run20, cfg.division),
                                   {"percentile": FIXED_PERCENTILE, "percentile_rule": "fixed (paper)"})
        stages("unit")

        # magnitude ---------------------------------------------------------------------
        mag_cfg = MagnitudeConfig(max_drop=cfg.max_drop / 100.0, device=device, seed=spec.seed,
                                  batch_size=cfg.batch_size or (8 if data.kind == "series" else 32),
                                  max_sparsity=0.1 if cfg.quick else 0.9,
                                  finetune_epochs=1 if cfg.quick else 2, finetune_lr=3e-4)
        mag = iterative_magnitude_prune(base, data, mag_cfg)
        mag_curve = [{"sparsity": 0.0, "val_accuracy": val_dense, "accuracy": dense_run.accuracy,
                      **_point_macs("magnitude", dense_run, model_macs)}]
        probe = copy.deepcopy(base)
        for i, step in enumerate(mag.steps):
            probe.load_state_dict(step.state_dict)
            r, _ = _counted_plain(probe, data.test, device)
            mag_curve.append({"sparsity": step.sparsity, "val_accuracy": step.val_accuracy,
                              "accuracy": r.accuracy, "within_bound": step.within_bound,
                              "after_stop": step.after_stop, "chosen": i == mag.chosen,
                              **_point_macs("magnitude", r, model_macs)})
        mag_model = mag.model.eval()
        mag_run, mag_conv = _counted_plain(mag_model, data.test, device)
        ev["magnitude"] = Evaluated("magnitude", mag_model, mag_run, cost("magnitude", mag_conv, mag_run),
                                    {"sparsity": sparsity_of(mag_model), "schedule": mag.to_json(),
                                     "stopping_split": "val", "selection_rule": mag.rule})
        stages("magnitude")

        # fatrelu -----------------------------------------------------------------------
        # greedy searches at every bound of the grid; for each bound the configuration (from the
        # searches at bounds up to it) that skips the most MACs on VAL within the bound
        val_loader = make_loader(data.val, batch_size=256)
        bounds = sorted(set(QUICK_FATRELU_BOUNDS_PT if cfg.quick else FATRELU_BOUNDS_PT) | {cfg.max_drop})
        fat_base = copy.deepcopy(base)
        fat_rep = replace_relus(fat_base)
        sel = calibrate_fatrelu_bounds(
            fat_base, lambda mm: evaluate(mm, data.val, device=device).accuracy,
            lambda mm: _macs_of("fatrelu", _counted_plain(mm, data.val, device)[0],
                                model_macs).skipped_fraction,
            [b / 100.0 for b in bounds], calibration_batches=val_loader, device=device)
        fat_models: dict[int, tuple[nn.Module, CountedRun, nn.Module]] = {}
        fat_curve = []
        for k, b in enumerate(bounds):
            i = sel.selected[k]
            if i not in fat_models:
                m = copy.deepcopy(fat_base).eval()
                set_fatrelu_thresholds(m, sel.greedy[i].thresholds)
                r, conv_m = _counted_plain(m, data.test, device)
                fat_models[i] = (m, r, conv_m)
            r = fat_models[i][1]
            fat_curve.append({"bound_pt": b, "selected_from_bound_pt": 100 * sel.bounds[i],
                              "thresholds": sel.greedy[i].thresholds,
                              "val_accuracy": sel.greedy[i].accuracy,
                              "val_drop_pt": 100 * sel.val_drop[i],
                              "val_skipped_fraction": sel.val_skipped[i],
                              "greedy_val_skipped_fraction": sel.val_skipped[k],
                              "greedy_val_drop_pt": 100 * sel.val_drop[k],
                              "accuracy": r.accuracy, **_point_macs("fatrelu", r, model_macs)})
        i_fat = sel.index(cfg.max_drop / 100.0)
        fat_model, r, conv_m = fat_models[i_fat]
        fat_cal = sel.greedy[i_fat]
        ev["fatrelu"] = Evaluated("fatrelu", fat_model, r, cost("fatrelu", conv_m, r),
                                  {"calibration": fat_cal.to_json(), "replaced": fat_rep.to_json(),
                                   "selected_from_bound_pt": 100 * sel.bounds[i_fat],
                                   "selection": {k: v for k, v in sel.to_json().items() if k != "greedy"}})
        stages("fatrelu")

        # combos ------------------------------------------------------------------------
        um = _unit_sweep(mag_model, data, cfg, percentiles, model_macs, device, val_dense, x_val)
        um.products = None
        um_model, um_curve, um_run = um.model, um.curve, um.run
        ev["unit+magnitude"] = Evaluated("unit+magnitude", um_model, um_run,
                                         cost("unit+magnitude", um_model, um_run, cfg.division),
                                         {"percentile": um.percentile, "sparsity": sparsity_of(mag_model),
                                          "percentile_choice": um.choice.to_json() if um.choice else None,
                                          "sweep": um_curve})
        uf = _unit_sweep(fat_model, data, cfg, percentiles, model_macs, device, val_dense, x_val)
        uf.products = None
        uf_model, uf_curve, uf_run = uf.model, uf.curve, uf.run
        ev["unit+fatrelu"] = Evaluated("unit+fatrelu", uf_model, uf_run,
                                       cost("unit+fatrelu", uf_model, uf_run, cfg.division),
                                       {"percentile": uf.percentile,
                                        "percentile_choice": uf.choice.to_json() if uf.choice else None,
                                        "fatrelu_thresholds": fat_cal.thresholds})
        stages("combos")

        # checks: divisions, executions, kernels ---------------------------------------
        div_check = check_divisions(unit_model, x_val)
        div_costs = _division_costs(base, data, cfg, percentiles, model_macs, device, val_dense,
                                    x_val, us)
        us.products = None
        x_few = torch.stack([data.test[i][0] for i in range(min(len(data.test), 4))]).to(device)
        agreement = [a.to_json() for a in model_agreement(unit_model, x_few)]
        kernel = time_model_kernels(unit_model, x1, reps=20 if cfg.quick else 100)
        stages("checks")

        # latency (torch, plain models) ----------------------------------------------------
        # one thread unless --threads: on a shared 2-core machine two intra-op threads spin-wait
        lat = compare_latency({k: (ev[k].model, x1) for k in ("dense", "magnitude", "fatrelu")},
                              n=20 if cfg.quick else 100, warmup=5, threads=spec.threads or 1)
        stages("latency")

        # domain shift --------------------------------------------------------------------
        shift_rows = []
        if cfg.shift:
            for s in default_shifts(data.kind):
                ds = shifted_dataset(data.test, s, seed=spec.seed)
                row = {"shift": s.name}
                for k in ("dense", "magnitude", "unit", "unit+magnitude"):
                    mdl = ev[k].model
                    r = (counted_evaluate(mdl, ds, device=device) if k.startswith("unit")
                         else _counted_plain(mdl, ds, device)[0])
                    row[k] = {"accuracy": r.accuracy,
                              "skipped_fraction": _macs_of(k, r, model_macs).skipped_fraction}
                shift_rows.append(row)
        stages("shift")

        # comparison at equal MACs (common basis) -------------------------------------------
        uc = [(c["remaining"], c["accuracy"]) for c in unit_curve]
        comparisons = {
            "magnitude": compare_at_equal_macs(uc, [(c["remaining"], c["accuracy"]) for c in mag_curve[1:]], "magnitude").to_json(),
            "fatrelu": compare_at_equal_macs(uc, [(c["remaining"], c["accuracy"]) for c in fat_curve], "fatrelu").to_json(),
        }
        for comp in comparisons.values():
            comp["basis_description"] = COMMON_BASIS

        # figures ---------------------------------------------------------------------------
        prof = cfg.mcu_profile
        curves = {"unit": uc,
                  "magnitude": [(c["remaining"], c["accuracy"]) for c in mag_curve],
                  "fatrelu": [(c["remaining"], c["accuracy"]) for c in fat_curve],
                  "unit+magnitude": [(c["remaining"], c["accuracy"]) for c in um_curve],
                  "unit+fatrelu": [(c["remaining"], c["accuracy"]) for c in uf_curve]}
        chosen = {k: (1 - ev[k].cost.skipped_fraction, ev[k].run.accuracy) for k in VARIANTS if k != "dense"}
        ref = "dense (every MAC)"
        figs = [
            viz.accuracy_vs_macs(curves, dense_run.accuracy, directory / "accuracy_vs_macs.png",
                                 title=f"{spec.model} on {data.label}: accuracy drop vs remaining MACs",
                                 chosen=chosen),
            viz.mcu_time({ref: ev["dense"].cost.own.mcu[prof].seconds * 1e3,
                          **{k: ev[k].cost.mcu[prof].seconds * 1e3 for k in VARIANTS}},
                         directory / "mcu_time.png", profile=prof, reference=ref),
            viz.mcu_energy({ref: ev["dense"].cost.own.mcu[prof].energy_j * 1e6,
                            **{k: ev[k].cost.mcu[prof].energy_j * 1e6 for k in VARIANTS}},
                           directory / "mcu_energy.png", profile=prof, reference=ref),
        ]
        stages("figures")
    finally:
        stages.close()

    # results -------------------------------------------------------------------------------
    dense_own = ev["dense"].cost.own
    variants = []
    unit_reason = ("the UnIT variants run here through the PyTorch reference, a vectorised "
                   "SIMULATION of the skipping semantics whose wall time says nothing about a "
                   "deployment; see extra.kernel_timing for the compiled skip kernel against the "
                   "same kernel without skipping, and extra.mcu for the modelled MCU time")
    for k in VARIANTS:
        e = ev[k]
        c = e.cost
        timed = k in ("dense", "magnitude", "fatrelu")
        extra = {
            "accuracy_split": "test", "calibration_split": "val", "runtime": c.runtime,
            "basis": COMMON_BASIS,
            "counts": c.counts.to_json(), "per_layer": {n: v.to_json() for n, v in e.run.per_layer.items()},
            "left_alone_counts": c.left_alone.to_json(),
            "left_alone_per_layer": {n: v.to_json() for n, v in e.run.left_alone_per_layer.items()},
            "skipped_fraction": c.skipped_fraction, "other_macs": c.other_macs,
            "mcu": {p: v.to_json() for p, v in c.mcu.items()},
            "mcu_cycles_vs_dense": {p: v.cycles / dense_own.mcu[p].cycles for p, v in c.mcu.items()},
            "mcu_cycles_vs_dense_note": "common-basis cycles / the dense model's on a dense loop (every MAC, no tests)",
            "macs_executed_exact": c.macs_executed,
            "own_runtime": {**c.own.to_json(),
                            "mcu_cycles_vs_dense": {p: v.cycles / dense_own.mcu[p].cycles
                                                    for p, v in c.own.mcu.items()}},
            **e.extra,
        }
        if k != "dense":
            extra["accuracy_drop_pt"] = 100 * (dense_run.accuracy - e.run.accuracy)
        if timed:
            latency = lat[k].to_json()
            extra["latency_note"] = ("torch dense kernels: zero weights (magnitude) and zero "
                                     "activations (fatrelu) run at full cost in PyTorch")
            mem = peak_memory(lambda m=e.model: m(x1)).bytes
        elif k == "dense+zero-skip":
            latency = None
            extra["latency_ms"] = ("the same torch model as dense (torch has no zero-skipping "
                                   "kernel); see the dense variant's latency and extra.mcu")
            mem = None
            extra["peak_mem_bytes"] = "the same torch model as dense; see the dense variant's"
        else:
            latency = None
            extra["latency_ms"] = unit_reason
            mem = None
            extra["peak_mem_bytes"] = "the reference simulation's memory is not a deployment's; not reported"
        if k == "magnitude":
            extra["size_note"] = ("dense storage of a sparse model: a CSR-like runtime would store "
                                  f"{int(sum((p != 0).sum() for p in e.model.parameters()))} nonzero values plus indices")
        if k == "unit":
            extra.update({
                "sweep": unit_curve, "curves": {"magnitude": mag_curve, "fatrelu": fat_curve,
                                                "unit+magnitude": um_curve, "unit+fatrelu": uf_curve},
                "equal_mac_comparison": comparisons, "domain_shift": shift_rows,
                "division_agreement": div_check.to_json(), "execution_agreement": agreement,
                "mcu_by_division": {m: {k2: v for k2, v in d.items() if k2 != "cost"}
                                    for m, d in div_costs.items()},
                "kernel_timing": kernel.to_json(), "conversion": report_conv,
                "base_model": base_info, "config": asdict(cfg)})
        variants.append(Variant(
            name=k, accuracy=e.run.accuracy, macs=c.macs, macs_executed=int(round(c.macs_executed)),
            params=count_params(e.model), size_bytes=artifact_size(e.model).bytes, latency_ms=latency,
            peak_mem_bytes=mem,
            energy_j={"value": c.mcu[prof].energy_j, "estimated": True,
                      "source": f"estimate: {c.mcu[prof].source}; per inference on the MCU model"},
            extra=extra))
    results = Results(method="unit", model=spec.model, dataset=data.label,
                      env={**env_info(device, threads, spec.seed), "mcu_profile": prof},
                      variants=variants, figures=[f.name for f in figs], quick=cfg.quick)
    # every accuracy above is a TEST accuracy: its Wilson interval and per-image hits come from the
    # very evaluation that produced it, and the method is compared with its rivals image by image
    results = with_statistics(results, {k: ev[k].run.hits for k in VARIANTS}, compare=COMPARE,
                              seed=spec.seed)
    path = write_results(directory, results)
    text = _report(spec, data, cfg, ev, comparisons, shift_rows, div_check, agreement,
                   kernel, lat, path, time.perf_counter() - t_start, us, div_costs, mag, mag_curve,
                   report_conv, fat_curve, results)
    return results, text, path


# ----------------------------------------------------------------------------- the report

def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _report(spec, data, cfg, ev, comparisons, shift_rows, div_check, agreement,
            kernel, lat, path, elapsed, us, div_costs, mag, mag_curve, report_conv, fat_curve,
            results: Results) -> str:
    prof = cfg.mcu_profile
    dense_acc = ev["dense"].run.accuracy
    dense_own = ev["dense"].cost.own
    ref = {p: dense_own.mcu[p].cycles for p in dense_own.mcu}
    rows = []
    for k in VARIANTS:
        e = ev[k]
        c = e.cost
        ci = results.variant(k).accuracy_ci
        rows.append([k, f"{e.run.accuracy:.4f}", f"{ci['low']:.3f}-{ci['high']:.3f}",
                     f"{100 * (dense_acc - e.run.accuracy):+.2f}",
                     fmt_count(int(round(c.macs_executed))), _pct(c.skipped_fraction),
                     f"{c.mcu[prof].seconds * 1e3:.1f}", f"{c.mcu[prof].cycles / ref[prof]:.2f}x",
                     f"{c.mcu['msp430-hwmul'].cycles / ref['msp430-hwmul']:.2f}x",
                     f"{c.mcu[prof].energy_j * 1e6:.1f}",
                     c.own.runtime, _pct(c.own.skipped_fraction),
                     f"{c.own.mcu[prof].cycles / ref[prof]:.2f}x"])
    rule = "auto (val)" if us.choice is not None else "fixed"
    lines = [f"UnIT on {spec.model} / {data.label}: percentile {us.percentile:g} ({rule}), groups {cfg.groups}, "
             f"division {cfg.division}; calibrated on val ({len(data.val)}), scored on test ({len(data.test)})"]
    left = report_conv["left_alone"]
    lines.append(f"conversion (groups {cfg.groups}): converted {', '.join(report_conv['converted'])}"
                 + ("; left alone: " + ", ".join(f"{d['name']} ({d['reason']})" for d in left)
                    + " -- counted in every variant on the zero-skipping runtime, without thresholds"
                    if left else "; nothing left alone"))
    if us.choice is not None:
        ch = us.choice
        lines.append(f"percentile auto: largest sweep percentile with val acc >= dense val {ch.dense_val_accuracy:.4f} "
                     f"- {100 * ch.max_drop:g} pt -> p{ch.percentile:g} (val {ch.val_accuracy:.4f}"
                     f"{'' if ch.within_bound else '; NONE within the bound, smallest taken'}); val curve: "
                     + ", ".join(f"p{p:g} {a:.4f}" for p, a in ch.val_curve))
    lines += ["",
              text_table(rows, ["variant", "acc", "95% CI", "drop pt", "MACs exec", "skipped",
                                f"MCU ms ({prof})", "cyc/dense", "hwmul cyc/dense", "MCU uJ",
                                "own runtime", "own skipped", "own cyc/dense"], left=1),
              f"(MACs per inference, averaged over test; 'MACs exec', 'skipped' and the MCU columns count "
              f"EVERY variant on one runtime: {COMMON_BASIS}; 'own' columns: each variant's own runtime; "
              f"cycles relative to the dense model on a dense loop, every MAC, no tests; MCU figures are "
              f"ESTIMATES from the cycle model; '95% CI': Wilson interval of the test accuracy, "
              f"n={ev['dense'].run.n})",
              "paired on the same test images (bootstrap 95 % CI of the difference, exact McNemar):",
              *(f"  {c['verdict']}" for c in results.comparisons)]
    steps_avg = {m: d["steps"]["average_steps"] for m, d in div_costs.items()}
    lines.append("unit by division, each at the percentile chosen on its own val curve (test acc / "
                 f"skipped / {prof} cycles/dense, measured loop steps per division): " + "; ".join(
                     f"{m} p{d['percentile']:g} {d['accuracy']:.4f} / {_pct(d['skipped_fraction'])} / "
                     f"{d['cost'].mcu[prof].cycles / ref[prof]:.2f}x"
                     + (f" ({steps_avg[m]:.2f} steps)" if m in ("bitshift", "binary_tree") else "")
                     for m, d in div_costs.items()))
    ff = mag.chosen_first_failure
    lines.append(f"magnitude schedule (sparsity: val / test acc / MACs left; chosen on val, largest step "
                 f"within the bound: {'none (dense)' if mag.chosen < 0 else f'{100 * mag.sparsity:.0f}%'}; "
                 f"stop-at-first-failure would give "
                 f"{'none (dense)' if ff < 0 else f'{100 * mag.steps[ff].sparsity:.0f}%'}): " + ", ".join(
                     f"{100 * st['sparsity']:.0f}%: {st['val_accuracy']:.3f}/{st['accuracy']:.3f}/"
                     f"{_pct(st['remaining'])}" for st in mag_curve[1:]))
    lines.append("fatrelu by bound (config from bound / val drop pt / val skipped / test acc; the "
                 "config skipping most on val among the searches at bounds <= b): " + ", ".join(
                     f"{c['bound_pt']:g} pt: {c['selected_from_bound_pt']:g} / {c['val_drop_pt']:.2f} / "
                     f"{_pct(c['val_skipped_fraction'])} / {c['accuracy']:.3f}" for c in fat_curve))
    c = ev["unit"].run.counts
    lines += ["", f"UnIT skips by cause (of the converted layers' MACs): zero weight {_pct(c.zero_weight / c.total)}, "
                  f"zero input {_pct(c.zero_input / c.total)} (ReLU / padding zeros any zero-skipping "
                  f"runtime also skips), threshold {_pct(c.threshold / c.total)}"]
    for name, comp in comparisons.items():
        mm = comp["min_margin"]
        lines.append(f"equal-MAC comparison vs {name} (common basis): UnIT >= {name} at "
                     f"{comp['unit_at_least']}/{comp['compared']} comparable points "
                     f"(min margin {'-' if mm is None else f'{100 * mm:+.2f} pt'})")
    if shift_rows:
        srows = [[r["shift"]] + [f"{r[k]['accuracy']:.3f} / {_pct(r[k]['skipped_fraction'])}"
                                 for k in ("dense", "magnitude", "unit", "unit+magnitude")] for r in shift_rows]
        lines += ["", "domain shift (calibrated on clean val; accuracy / MACs skipped, common basis):",
                  text_table(srows, ["shift", "dense", "magnitude", "unit", "unit+magnitude"], left=1)]
    ov = div_check.overall
    lines += ["", "division approximations vs exact division at the calibrated thresholds (val MAC pairs): "
              + ", ".join(f"{k} {_pct(v)} agree" for k, v in ov.items())]
    ok = all(a["ok"] for a in agreement)
    lines.append("three executions on 4 test inputs (reference / compiled / int16 fixed point, exact "
                 f"division): {'agree' if ok else 'DISAGREE'}; counts equal "
                 f"{all(a['kernel_counts_equal'] and a['fixed_counts_equal'] for a in agreement)}; "
                 f"max |kernel - reference| {max(a['kernel_max_abs_diff'] for a in agreement):.2e}; "
                 f"max |fixed - reference| {max(a['fixed_max_abs_diff'] for a in agreement):.2e} "
                 f"({agreement[0]['qformat']}); T=0 vs dense {max(a['dense_at_t0_max_abs_diff'] for a in agreement):.2e}")
    dv = kernel.division_vs_exact()
    lines.append(f"compiled kernels on this CPU, batch 1, median of {kernel.reps} interleaved, thread CPU "
                 f"time: skip/dense {kernel.skip_vs_dense:.2f}x ({kernel.median_us['skip-exact']:.0f} vs "
                 f"{kernel.median_us['dense-kernel']:.0f} us, IQR {kernel.iqr_us['skip-exact']:.0f} / "
                 f"{kernel.iqr_us['dense-kernel']:.0f}; wall {kernel.wall_median_us['skip-exact']:.0f} vs "
                 f"{kernel.wall_median_us['dense-kernel']:.0f} us, {kernel.wall_skip_vs_dense:.2f}x; > 1 = "
                 "skipping is slower here: branches cost more than the multiplies they save on a "
                 "pipelined x86); vs exact division: " + ", ".join(f"{k} {v:.2f}x" for k, v in dv.items()))
    lines.append("torch batch-1 latency (interleaved): " + ", ".join(
        f"{k} {v.median_ms:.3f} ms (IQR {v.iqr_ms:.3f})" for k, v in lat.items())
        + "; UnIT's torch path is a simulation and is not timed")
    u = ev["unit"]
    lines += ["",
              f"unit: {100 * u.cost.skipped_fraction:.1f} % of MACs skipped at "
              f"{100 * (dense_acc - u.run.accuracy):+.2f} pt test drop (your --max-drop "
              f"{cfg.max_drop:g} pt applied on val"
              + (f"; percentile p{us.percentile:g}" if us.choice is not None
                 else f"; fixed --percentile {us.percentile:g}, --max-drop not used for it") + ")",
              f"wrote {path} and {', '.join(['accuracy_vs_macs.png', 'mcu_time.png', 'mcu_energy.png'])} "
              f"({elapsed:.0f} s)"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI

def add_arguments(p) -> None:
    add_common_arguments(p, training=True)
    p.add_argument("--percentile", type=str, default="auto",
                   help="percentile of |x*w| (nonzero pairs, val split) for each layer's threshold, or "
                        "'auto' (default): the largest sweep percentile whose VAL accuracy is within "
                        "--max-drop of dense (the paper used 20; unit@p20 is always reported)")
    p.add_argument("--groups", type=int, default=1, help="threshold groups of output units per layer")
    p.add_argument("--division", choices=METHODS, default="exact", help="threshold division (paper section 2.2)")
    p.add_argument("--sweep", type=str, default=None,
                   help=f"percentiles for the trade-off curve (default {','.join(f'{v:g}' for v in DEFAULT_SWEEP)})")
    p.add_argument("--epochs", type=int, default=None, help="base model epochs (default 10 images, 40 series)")
    p.add_argument("--batch-size", type=int, default=None, help="base model batch (default 32 images, 8 series)")
    p.add_argument("--mcu-profile", choices=tuple(PROFILES), default="msp430-swmul")
    p.add_argument("--max-drop", type=float, default=0.5, metavar="PT",
                   help="validation accuracy drop allowed to magnitude pruning, FATReLU and the auto "
                        "percentile, in percentage points (0.5 = half a point)")
    p.add_argument("--no-shift", action="store_true", help="skip the domain-shift table")
    deprecated_alias(p, "--limit", "--test-limit", also=("val_limit",),
                     note="--limit N was --val-limit N --test-limit N")
    p.add_argument("--quick", action="store_true", help="small sweep, few prune steps, 2 epochs: a smoke run")


def run_command(args, progress=None) -> CommandReport:
    sweep_ = percentile_list(args.sweep) if args.sweep else (QUICK_SWEEP if args.quick else DEFAULT_SWEEP)
    cfg = UnitRunConfig(percentile=parse_percentile(args.percentile), groups=args.groups, division=args.division,
                        sweep=sweep_, epochs=args.epochs if args.epochs is not None else (2 if args.quick else None),
                        batch_size=args.batch_size, mcu_profile=args.mcu_profile, max_drop=args.max_drop,
                        quick=args.quick, shift=not args.no_shift)
    _, text, _ = run_unit(spec_from_args(args), cfg, progress)
    return CommandReport(text)
