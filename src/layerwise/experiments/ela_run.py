"""``layerwise ela``: ResNet vs MRLA-B vs MRLA-L vs ELA, trained with the same seed and recipe.

Every variant is trained with ``layerwise.train.train`` (ELA through ``layerwise.ela.train_ela``);
the variants of one seed train with alternating epochs (``layerwise.ela.interleave``): round r runs
epoch r of every variant, in an order that rotates each round, one at a time, so machine-load drift
falls on all of them alike. Per-epoch wall time is the loop's own training time (validation
excluded), with the thread and process CPU time beside it. The training-step time of the four
trained models is also measured side by side over several batches and rounds.

``--ablation`` adds the EBQM ablations (Tables 4, 6, 7) and ELA with the other KL normalisation as
further ELA variants; ``--controls`` adds two controls that remove as many attention layers as ELA
did, window by window, without looking at the KL: at random (``ela-random``, drawn with the seed)
and at evenly spaced positions (``ela-position``); ``--gamma-sweep`` adds ELA with other EBQM
quantiles (``ela-q0.25`` ...). Each is compared with ELA on the same test images. ``--variants``
trains only some of these (ELA always among them), e.g. ``--controls --variants ela ela-random
ela-position`` for the controls alone: what is not trained is left out of the timings, ratios and
comparisons, and the results say which variants were trained.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from ..data import DatasetSplits, make_loader
from ..ela import ElaConfig, capture_distributions, find_attention_layers, train_ela
from ..ela.config import KL_NORMS
from ..ela.interleave import train_interleaved
from ..ela.step_timing import compare_train_steps
from ..errors import LayerwiseError
from ..evidence import combine_seeds, with_statistics
from ..measure import artifact_size, compare_latency, count_macs, count_params
from ..models import build_model
from ..models.mrla import VALUE_MODES, MRLABase, mrla_blocks
from ..results import Results, Variant, env_info, write_results
from ..train import TrainConfig, predict, train
from .common import (CommandReport, RunSpec, add_common_arguments, check_device, example_input, fmt_count,
                     limit_split, load_data_for_model, out_dir, seed_everything, set_threads, spec_from_args, text_table)

log = logging.getLogger(__name__)

VARIANTS = ("resnet", "mrla-b", "mrla-l", "ela")
ABLATIONS: dict[str, dict] = {  # Table 4 (strategies), Table 6 (distributions), Table 7 (quantile mapping)
    "ela-threshold": {"strategy": "threshold"},
    "ela-fixed": {"strategy": "fixed"},
    "ela-normal": {"mapping": "normal"},
    "ela-gamma": {"mapping": "gamma"},
    "ela-gqm": {"mapping": "gqm"},
    "ela-eqm": {"mapping": "eqm"},
}
#: controls: as many layers as ELA removed at each window, chosen without the KL
CONTROLS: dict[str, dict] = {"ela-random": {"strategy": "random"}, "ela-position": {"strategy": "position"}}
#: variants whose count follows ELA's decisions: they train right after ELA in every round
COUNT_MATCHED = ("ela-fixed", "ela-random", "ela-position")
BASES = ("resnet20", "resnet56", "resnet110")
SCHEDULES = ("cosine", "step")
PAPER_STEP_EPOCHS = (100, 150)  # the reference CIFAR recipe: lr / 10 at epochs 100 and 150 of 180
#: paired comparisons on the same test images (method variant, rival); with --ablation each
#: ablation is also compared with ela
COMPARE = (("ela", "mrla-b"), ("ela", "mrla-l"), ("ela", "resnet"))


@dataclass
class ElaOptions:
    epochs: int = 6
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 3e-3
    weight_decay: float = 0.0
    seeds: tuple[int, ...] = (0,)
    values: str = "sum"
    ela: ElaConfig = field(default_factory=ElaConfig)
    ablation: bool = False
    quick: bool = False
    step_rounds: int = 20
    step_batches: int = 4  # distinct batches the step-time rounds cycle through
    latency_n: int = 30
    train_limit: int | None = None  # use only the first N training samples (a shorter run)
    full_train: bool = False  # train on train + val, the whole training split (the papers' CIFAR setting)
    controls: bool = False
    gamma_sweep: tuple[float, ...] = ()
    schedule: str = "cosine"
    attention_drop_path: float = 0.0
    variants: tuple[str, ...] = ()  # train only these of the run's variants (empty: all of them)

    def variant_names(self) -> list[str]:
        names = list(VARIANTS)
        if self.ablation:
            names += list(ABLATIONS) + [other_norm_variant(self.ela.kl_norm)]
        if self.controls:
            names += list(CONTROLS)
        names += [gamma_variant(g) for g in self.gamma_sweep]
        names = list(dict.fromkeys(names))
        if not self.variants:
            return names
        unknown = [v for v in self.variants if v not in names]
        if unknown:
            hint = " (ela-random and ela-position need --controls, the ablations --ablation, ela-q<GAMMA> " \
                   "--gamma-sweep)"
            raise LayerwiseError(f"--variants {' '.join(unknown)}: not a variant of this run; choose from "
                                 f"{', '.join(names)}{hint}")
        if "ela" not in self.variants:
            raise LayerwiseError("--variants must include ela: it is what this command measures, and the "
                                 "controls and ablations are compared with it (e.g. --variants ela mrla-b)")
        return [n for n in names if n in self.variants]


def other_norm_variant(kl_norm: str) -> str:
    """ELA deciding on the KL normalisation the main ``ela`` variant does NOT use."""
    return "ela-kl-" + next(n for n in KL_NORMS if n != kl_norm)


def gamma_variant(gamma: float) -> str:
    return f"ela-q{gamma:g}"


def step_milestones(epochs: int) -> tuple[int, ...]:
    """The reference's lr / 10 at epochs 100 and 150 of 180, scaled to ``epochs`` (distinct, >= 1)."""
    return tuple(sorted({max(1, int(round(m * epochs / 180))) for m in PAPER_STEP_EPOCHS}))


@dataclass
class VariantRun:
    """One variant trained with one seed."""

    name: str
    model_name: str
    seed: int
    test_accuracy: float
    val_accuracy: float
    epoch_times: list[float]
    history: list[dict]
    skipped: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    kl_history: list[dict] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)
    test_hits: torch.Tensor | None = field(default=None, repr=False)  # per test image, test order
    thread_cpu_times: list[float] = field(default_factory=list)  # per epoch, the training thread
    process_cpu_times: list[float] = field(default_factory=list)  # per epoch, all threads of the process


@dataclass
class ElaOutput:
    results_path: Path
    results: Results
    runs: list[VariantRun]
    figures: list[Path]


def base_model(name: str) -> str:
    for suffix in ("-mrla-b", "-mrla-l", "-ela"):
        name = name.removesuffix(suffix)
    if name not in BASES:
        raise LayerwiseError(f"ela compares ResNet, MRLA-B, MRLA-L and ELA on the CIFAR bottleneck ResNets, not "
                             f"{name!r}: use --model resnet20, resnet56 or resnet110")
    return name


def model_name(base: str, variant: str) -> str:
    return base if variant == "resnet" else f"{base}-{'ela' if variant.startswith('ela') else variant}"


def whole_train_split(data: DatasetSplits) -> DatasetSplits:
    """``data`` trained on train + val: the dataset's whole training split (on CIFAR all 50,000
    official training images, the setting of the ELA and MRLA papers; 60,000 on Fashion-MNIST).

    ``val`` keeps the same images for the per-epoch monitoring and the attention-map figures, but
    they are now training images, so nothing is held out: ``layerwise ela`` takes no decision on
    them (no model selection or early stopping; ELA's KL comes from the training batches), and its
    results say so. The test split is unchanged and, as always, never used for a decision.
    Normalisation statistics stay those the dataset computed on its train part."""
    from torch.utils.data import ConcatDataset

    from ..data.images import ImageDataset

    train, val = data.train, data.val
    if isinstance(train, ImageDataset) and isinstance(val, ImageDataset) and train.raw is val.raw \
            and train.transform is val.transform:  # one dataset over both index sets (batched reads)
        merged = ImageDataset(train.raw, train.labels, torch.cat([train.indices, val.indices]).numpy(),
                              train.transform)
    else:
        merged = ConcatDataset([train, val])
    info = dict(data.info)
    info["full_train"] = (f"trained on train + val ({len(train)} + {len(val)} = {len(merged)} samples, the "
                          "whole training split); val is inside the training set (not held out)")
    log.info("%s: %s", data.name, info["full_train"])
    return dataclasses.replace(data, train=merged, info=info)


def ela_data(spec: RunSpec, opts: ElaOptions) -> DatasetSplits:
    """The splits ``layerwise ela`` trains on: the dataset's train split (``--train-limit``: a fixed
    stratified subset of it) and its validation split, or with ``--full-train`` both as training
    data (:func:`whole_train_split`; ``--val-limit`` then cuts only the monitored val images)."""
    if not opts.full_train:
        return load_data_for_model(spec)
    if spec.train_limit is not None or opts.train_limit is not None:
        raise LayerwiseError("--full-train trains on the whole training split (train + val): drop --train-limit, "
                             "or drop --full-train to train on a subset")
    data = whole_train_split(load_data_for_model(dataclasses.replace(spec, val_limit=None)))
    return limit_split(data, "val", spec.val_limit)


def _quick_data(data: DatasetSplits) -> DatasetSplits:
    return dataclasses.replace(data, train=Subset(data.train, range(min(64, len(data.train)))),
                               val=Subset(data.val, range(min(32, len(data.val)))),
                               test=Subset(data.test, range(min(64, len(data.test)))))


def _ela_config(opts: ElaOptions, variant: str, seed: int = 0) -> ElaConfig:
    changes = dict(ABLATIONS.get(variant, CONTROLS.get(variant, {})))
    if variant.startswith("ela-kl-"):
        changes["kl_norm"] = variant.removeprefix("ela-kl-")
    elif variant.startswith("ela-q"):
        changes["gamma"] = float(variant.removeprefix("ela-q"))
    if variant in CONTROLS:
        changes["random_seed"] = seed
    return dataclasses.replace(opts.ela, **changes)


def _train_config(opts: ElaOptions, spec: RunSpec, seed: int) -> TrainConfig:
    return TrainConfig(epochs=opts.epochs, batch_size=opts.batch_size, optimizer=opts.optimizer, lr=opts.lr,
                       weight_decay=opts.weight_decay, schedule=opts.schedule,
                       step_milestones=step_milestones(opts.epochs) if opts.schedule == "step" else (),
                       seed=seed, device=spec.device, augment=spec.augment)


def _skipped_count(model: nn.Module) -> int:
    return sum(b.skip_attention for _, b in mrla_blocks(model))


def _train_seed(spec: RunSpec, data: DatasetSplits, opts: ElaOptions, names: list[str], seed: int, base: str,
                directory: Path, progress) -> dict[str, VariantRun]:
    """Every variant of one seed, trained with alternating epochs (rotating order)."""
    models: dict[str, nn.Module] = {}
    for variant in names:  # each built from the same seed, as if it were trained alone
        seed_everything(seed)
        kwargs = {} if variant == "resnet" else {"attention_drop_path": opts.attention_drop_path}
        if variant not in ("resnet", "mrla-l"):
            kwargs["values"] = opts.values
        models[variant] = build_model(model_name(base, variant), data.input_shape, data.num_classes,
                                      **kwargs).to(spec.device)
    config = _train_config(opts, spec, seed)

    def job(variant: str):
        model, where = models[variant], directory / f"seed{seed}" / variant

        def run(factory):
            log.info("training %s (%s), seed %d", variant, model_name(base, variant), seed)
            if not variant.startswith("ela"):
                return train(model, data, config, out_dir=where, progress=factory)
            count = None
            if variant in COUNT_MATCHED:  # as many as ELA has removed by now, minus those already removed here
                count = lambda w: _skipped_count(models["ela"]) - _skipped_count(model)  # noqa: E731
            return train_ela(model, data, config, _ela_config(opts, variant, seed), out_dir=where,
                             progress=factory, count_source=count)
        return run

    done = train_interleaved({v: job(v) for v in names}, opts.epochs, progress=progress,
                             after={v: "ela" for v in COUNT_MATCHED if v in names})
    runs = {}
    for variant in names:
        res, model = done[variant].result, models[variant]
        tr = res.train if variant.startswith("ela") else res
        if tr.interrupted:
            raise KeyboardInterrupt
        run = VariantRun(variant, model_name(base, variant), seed, 0.0, 0.0, [], [])
        if variant.startswith("ela"):
            run.skipped = res.skipped
            run.events = [e.to_json() for e in res.schedule.events]
            run.kl_history = res.schedule.kl_history
        # the final test accuracy and, from the same pass, which test images the model got right
        pred = predict(model, data.test, device=spec.device)
        run.test_hits = (pred.predicted == pred.targets).cpu()
        run.test_accuracy = int(run.test_hits.sum()) / run.test_hits.numel()
        run.val_accuracy = tr.final_val_acc
        run.epoch_times = [h.time_s for h in tr.history]
        run.history = [asdict(h) for h in tr.history]
        run.thread_cpu_times = [c.thread_cpu_s for c in done[variant].cpu]
        run.process_cpu_times = [c.process_cpu_s for c in done[variant].cpu]
        run.model = model
        runs[variant] = run
    return runs


@contextlib.contextmanager
def _counting(model: nn.Module, all_layers: bool):
    """MACs as counted: MRLA-B's weighted sum as one einsum (whatever the model's values mode:
    the "loop" mode's products are elementwise and invisible to FlopCounterMode); ``all_layers`` counts every attention layer as if none were skipped."""
    blocks = [b for _, b in mrla_blocks(model)]
    saved = [(b.skip_attention, getattr(b.attention, "values_mode", None)) for b in blocks]
    for b in blocks:
        if isinstance(b.attention, MRLABase):
            b.attention.values_mode = "stack"
        if all_layers:
            b.skip_attention = False
    try:
        yield model
    finally:
        for b, (skip, mode) in zip(blocks, saved):
            b.skip_attention = skip
            if mode is not None:
                b.attention.values_mode = mode


def _median_iqr(xs: list[float]) -> tuple[float, float]:
    q25, q50, q75 = np.percentile(xs, [25, 50, 75])
    return float(q50), float(q75 - q25)


def run_ela(spec: RunSpec, opts: ElaOptions, progress=None) -> ElaOutput:
    check_device(spec.device)
    if spec.checkpoint is not None:
        raise LayerwiseError("ela trains every variant from scratch (skipping happens during training): "
                             "drop --checkpoint")
    names = opts.variant_names()  # a bad --variants fails here, before any data is read
    threads = set_threads(spec.threads)
    base = base_model(spec.model)
    spec = dataclasses.replace(spec, model=base)
    data = ela_data(spec, opts)
    if opts.quick:
        data = _quick_data(data)
    if opts.train_limit is not None:
        if opts.train_limit < opts.batch_size:
            raise LayerwiseError(f"--train-limit {opts.train_limit} is below one batch ({opts.batch_size}): "
                                 "use at least --batch-size samples")
        data = dataclasses.replace(data, train=Subset(data.train, range(min(opts.train_limit, len(data.train)))))
    opts.ela.validate(opts.epochs)
    directory = out_dir(spec, "ela")

    runs: list[VariantRun] = []
    for i, seed in enumerate(opts.seeds):
        seed_runs = _train_seed(spec, data, opts, names, seed, base, directory, progress)
        runs += [seed_runs[n] for n in names]
        if i > 0:
            for r in runs[-len(names):]:
                r.model = None  # keep only the first seed's models for the measurements below

    first = {r.name: r for r in runs if r.seed == opts.seeds[0]}
    models = {n: first[n].model for n in names}
    x1 = example_input(data, 1, spec.device)
    batches = []
    for bx, by in make_loader(data.train, opts.batch_size, shuffle=True, seed=opts.seeds[0]):
        batches.append((bx.to(spec.device), by.to(spec.device)))
        if len(batches) >= opts.step_batches:
            break
    log.info("timing training steps side by side (%d rounds over %d batches)", opts.step_rounds, len(batches))
    timed = [n for n in VARIANTS if n in names]  # the four models this command compares, those trained
    steps = compare_train_steps({n: models[n] for n in timed}, batches, rounds=opts.step_rounds, warmup=2,
                                threads=threads)
    lat = compare_latency({n: (models[n], x1) for n in timed}, n=opts.latency_n, warmup=3, threads=threads)

    val_loader = make_loader(data.val, 64)
    maps = {n: capture_distributions(models[n], val_loader, spec.device)
            for n in ("mrla-b", "mrla-l", "ela") if n in names}
    layer_order = [layer.name for layer in find_attention_layers(models["ela"])]
    mrla_b_epoch = _median_iqr([t for r in runs if r.name == "mrla-b" for t in r.epoch_times])[0] \
        if "mrla-b" in names else None

    variants = []
    for n in names:
        seeds_runs = [r for r in runs if r.name == n]
        accs = [r.test_accuracy for r in seeds_runs]
        all_times = [t for r in seeds_runs for t in r.epoch_times]
        med, iqr = _median_iqr(all_times)
        cpu_t = _median_iqr([t for r in seeds_runs for t in r.thread_cpu_times] or [float("nan")])
        cpu_p = _median_iqr([t for r in seeds_runs for t in r.process_cpu_times] or [float("nan")])
        model = models[n]
        with _counting(model, all_layers=True):
            macs = count_macs(model, x1).total
        with _counting(model, all_layers=False):
            executed = count_macs(model, x1).total
        extra = {
            "model": first[n].model_name,
            "accuracy_split": "test",
            "accuracy_per_seed": accs,
            "accuracy_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
            "val_accuracy_per_seed": [r.val_accuracy for r in seeds_runs],
            "seeds": list(opts.seeds),
            "epoch_time_s": med,
            "epoch_time_iqr_s": iqr,
            "epoch_time_source": "median over all epochs of all seeds of the training loop's own time "
                                 "(validation excluded); the variants of a seed trained with alternating "
                                 "epochs, one at a time, in an order rotating each round",
            "epoch_times_s_per_seed": [r.epoch_times for r in seeds_runs],
            "epoch_thread_cpu_s": cpu_t[0], "epoch_thread_cpu_iqr_s": cpu_t[1],
            "epoch_process_cpu_s": cpu_p[0], "epoch_process_cpu_iqr_s": cpu_p[1],
            "epoch_cpu_source": "time.thread_time of the training thread / time.process_time of the whole "
                                "process (intra-op threads included) from the first to the last batch",
            "epoch_thread_cpu_s_per_seed": [r.thread_cpu_times for r in seeds_runs],
            "epoch_process_cpu_s_per_seed": [r.process_cpu_times for r in seeds_runs],
            "latency_ms": "not measured for ablation variants (see ela)" if n not in lat else None,
            "peak_mem_bytes": "not measured: ELA is a training-time method; see step_time_ms",
            "energy_j": "not measured: no energy counter is used for training runs here",
            "recipe": {"epochs": opts.epochs, "batch_size": opts.batch_size, "optimizer": opts.optimizer,
                       "lr": opts.lr, "weight_decay": opts.weight_decay, "schedule": opts.schedule,
                       "step_milestones": list(step_milestones(opts.epochs)) if opts.schedule == "step" else [],
                       "augment": spec.augment, "attention_drop_path": opts.attention_drop_path,
                       "values": opts.values, "full_train": opts.full_train, "val_held_out": not opts.full_train,
                       "quick": opts.quick, "train_samples": len(data.train),
                       "val_samples": len(data.val), "test_samples": len(data.test)},
            "history_first_seed": first[n].history,
        }
        if n in steps:
            extra["step_time_ms"] = steps[n].to_json()
            if "mrla-b" in steps:
                extra["step_time_ratio_vs_mrla_b"] = steps[n].median_ms / steps["mrla-b"].median_ms
        if mrla_b_epoch is not None:
            extra["epoch_time_ratio_vs_mrla_b"] = med / mrla_b_epoch
        if n != "resnet":
            extra["attention_layers"] = len(mrla_blocks(model))
        if n.startswith("ela"):
            extra["ela_config"] = asdict(_ela_config(opts, n, opts.seeds[0]))
            if n in COUNT_MATCHED:
                extra["ela_config"]["fixed_counts"] = "as many as ela removed at each window (same seed)"
            if n in CONTROLS:
                extra["ela_config"]["random_seed"] = "the run's seed" if n == "ela-random" else None
            extra["windows"] = [list(w) for w in opts.ela.resolved_windows(opts.epochs)]
            extra["skipped_per_seed"] = [r.skipped for r in seeds_runs]
            extra["skip_set_saved_as"] = ("the boolean buffers <block>.attention_skip of the model's state dict "
                                          "(seed*/" + n + "/checkpoint.pt): loading restores the skip set")
            extra["skip_events_per_seed"] = [r.events for r in seeds_runs]
            extra["kl_history_first_seed"] = first[n].kl_history
        variants.append(Variant(
            name=n, accuracy=float(np.mean(accs)), macs=int(macs), macs_executed=int(executed),
            params=count_params(model), size_bytes=artifact_size(model).bytes,
            latency_ms=lat[n].to_json() if n in lat else None, peak_mem_bytes=None, energy_j=None,
            extra={k: v for k, v in extra.items() if not (k == "latency_ms" and v is None)}))

    figs = _figures(directory, base, data.label, maps, layer_order, first["ela"].events,
                    {n: first[n].epoch_times for n in timed})
    env = env_info(spec.device, threads, spec.seed)
    if len(opts.seeds) > 1:
        env["seeds"] = list(opts.seeds)
    results = Results(method="ela", model=base, dataset=data.label, env=env,
                      variants=variants, figures=[p.name for p in figs], quick=opts.quick)
    results = with_evidence(results, runs, list(opts.seeds), comparison_pairs(names))
    path = write_results(directory, results)
    for r in runs:
        r.model = None
    return ElaOutput(path, results, runs, figs)


def comparison_pairs(names: list[str]) -> list[tuple[str, str]]:
    """ELA against MRLA-B, MRLA-L and ResNet and against each control; each ablation, KL
    normalisation and gamma of the sweep (when trained) against ELA."""
    return [(a, b) for a, b in COMPARE if b in names] + [("ela", n) for n in names if n in CONTROLS] + \
        [(n, "ela") for n in names if n.startswith("ela-") and n not in CONTROLS]


def with_evidence(results: Results, runs: list[VariantRun], seeds: list[int],
                  compare: list[tuple[str, str]]) -> Results:
    """``results`` with each variant's test evidence (schema /2) from its runs' final test hits.

    One seed: :func:`~layerwise.evidence.with_statistics` (``test_hits``, Wilson ``accuracy_ci``,
    comparisons). Several seeds: every seed is a result of its own (its variants at that seed's
    accuracy and hits), combined by :func:`~layerwise.evidence.combine_seeds`; each variant keeps
    its fields and takes from the combination ``accuracy`` (the mean over seeds), ``accuracy_std``,
    ``seeds`` (each seed's accuracy, interval and ``test_hits``) and ``accuracy_ci`` (Wilson on the
    hits pooled over the seeds); the comparisons are those of the pooled hits (each seed's images
    paired). No top-level ``test_hits`` then: a mean over seeds is not one test pass."""
    by = {(r.name, r.seed): r for r in runs}
    if len(seeds) == 1:
        return with_statistics(results, {v.name: by[(v.name, seeds[0])].test_hits for v in results.variants},
                               compare=compare, seed=seeds[0])
    per_seed = []
    for s in seeds:
        r = copy.deepcopy(results)
        r.env["seed"] = s
        r.env.pop("seeds", None)
        r.comparisons = []
        for v in r.variants:
            v.accuracy = by[(v.name, s)].test_accuracy
        per_seed.append(with_statistics(r, {v.name: by[(v.name, s)].test_hits for v in r.variants},
                                        compare=compare, seed=s))
    combined = combine_seeds(per_seed, compare=compare, seed=seeds[0])
    out = copy.deepcopy(results)
    for v in out.variants:
        c = combined.variant(v.name)
        v.accuracy, v.accuracy_std, v.seeds, v.accuracy_ci = c.accuracy, c.accuracy_std, c.seeds, c.accuracy_ci
        v.test_hits = None
    out.comparisons = combined.comparisons
    out.schema = combined.schema
    return out


def _figures(directory: Path, base: str, label: str, maps, layer_order, events, times) -> list[Path]:
    from ..viz import ela as viz

    return [
        viz.attention_maps(maps, layer_order, directory / "attention_maps.png",
                           f"{base} on {label}: mean attention over the stage's layers (val)"),
        viz.kl_per_layer(events, layer_order, directory / "kl_per_layer.png",
                         f"{base}-ela on {label}: window-mean KL per layer, skipped marked"),
        viz.epoch_times(times, directory / "epoch_time.png", f"{base} on {label}: training time per epoch"),
    ]


NAME = "ela"
HELP = "ELA: train ResNet, MRLA-B, MRLA-L and ELA (skipping redundant attention) side by side"


def _windows(text: str) -> tuple[tuple[int, int], ...]:
    try:
        out = []
        for part in text.split(","):
            a, _, b = part.strip().partition("-")
            out.append((int(a), int(b or a)))
        return tuple(out)
    except ValueError:
        raise LayerwiseError(f"--windows {text!r}: give 1-based epoch ranges such as 1-1,3-3,5-5") from None


def add_arguments(p) -> None:
    add_common_arguments(p, training=True)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=None, help="default 3e-3 for adam, 0.1 for sgd")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seeds", type=int, nargs="+", help="train every variant with each seed (default: --seed)")
    p.add_argument("--values", choices=VALUE_MODES, default="sum",
                   help="MRLA-B's weighted sum of values (the same output): sum = each value stored once per "
                        "stage, one batched product (fastest); stack = re-stacked at every layer + einsum (as "
                        "the reference's torch.cat); loop = term by term")
    p.add_argument("--windows", help="KL windows as epoch ranges, e.g. 1-1,3-3 (default: the paper's, scaled)")
    p.add_argument("--gamma", type=float, default=0.5, help="EBQM quantile (the paper gives none)")
    p.add_argument("--alpha", type=float, default=5.0, help="Beta alpha (paper, CIFAR: 5)")
    p.add_argument("--beta", type=float, default=1.0, help="Beta beta (paper, CIFAR: 1)")
    p.add_argument("--mu", type=float, default=0.3, help="EBQM threshold (paper, CIFAR: 0.3)")
    p.add_argument("--kl-threshold", type=float, default=0.05, help="raw KL threshold of the threshold ablation")
    p.add_argument("--kl-norm", choices=KL_NORMS, default="uniform",
                   help="KL that EBQM ranks: eq. 8 divided by its value for uniform attention at the same "
                        "position (uniform, comparable across positions) or eq. 8 as in the paper (paper)")
    p.add_argument("--ablation", action="store_true",
                   help="also train the Table 4/6/7 ablations and ELA with the other --kl-norm")
    p.add_argument("--controls", action="store_true",
                   help="also train ela-random and ela-position: as many layers removed as ELA, chosen at "
                        "random / at evenly spaced positions, without the KL")
    p.add_argument("--variants", nargs="+", metavar="NAME",
                   help="train only these of the run's variants (ela always among them), e.g. --controls "
                        "--variants ela ela-random ela-position; what is left out is not timed or compared")
    p.add_argument("--gamma-sweep", type=float, nargs="+", metavar="GAMMA", default=(),
                   help="also train ELA with these EBQM quantiles (variants ela-q<GAMMA>)")
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                   help="learning-rate schedule; step: lr / 10 at 100/180 and 150/180 of the epochs "
                        "(the reference CIFAR recipe)")
    p.add_argument("--attention-drop-path", type=float, default=0.0, metavar="P",
                   help="drop-path on the attention branch of MRLA/ELA blocks (reference recipe: 0.2)")
    p.add_argument("--quick", action="store_true", help="a few samples and at most 2 epochs: a smoke test")
    p.add_argument("--full-train", action="store_true",
                   help="train on the whole training split, train + the validation split (CIFAR: all 50,000 "
                        "images, the papers' setting); the validation images are then training images, so val "
                        "accuracy is not held out (no decision here uses it; the test split is never used)")
    p.add_argument("--step-rounds", type=int, default=20, help="interleaved training steps per variant")
    p.add_argument("--step-batches", type=int, default=4, help="distinct batches the step rounds cycle through")


def options_from_args(args) -> ElaOptions:
    epochs = min(args.epochs, 2) if args.quick else args.epochs   # --quick: at most 2
    windows = _windows(args.windows) if args.windows else (((1, 1),) if args.quick else None)
    ela = ElaConfig(windows=windows, gamma=args.gamma, alpha=args.alpha, beta=args.beta, mu=args.mu,
                    kl_threshold=args.kl_threshold, kl_norm=args.kl_norm)
    lr = args.lr if args.lr is not None else (0.1 if args.optimizer == "sgd" else 3e-3)
    for g in args.gamma_sweep:
        if not 0.0 < g <= 1.0:
            raise LayerwiseError(f"--gamma-sweep {g:g}: each value is an EBQM quantile in (0, 1], e.g. 0.25 0.75")
    if args.step_rounds < 1 or args.step_batches < 1:
        raise LayerwiseError(f"--step-rounds {args.step_rounds} / --step-batches {args.step_batches}: use 1 or more")
    return ElaOptions(epochs=epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=lr,
                      weight_decay=args.weight_decay, seeds=tuple(args.seeds or [args.seed]), values=args.values,
                      ela=ela, ablation=args.ablation, quick=args.quick,
                      step_rounds=1 if args.quick else args.step_rounds,
                      step_batches=1 if args.quick else args.step_batches, latency_n=2 if args.quick else 30,
                      train_limit=None,   # --train-limit: a stratified subset, in load_data_for_model
                      controls=args.controls, gamma_sweep=tuple(dict.fromkeys(args.gamma_sweep)),
                      schedule=args.schedule, attention_drop_path=args.attention_drop_path,
                      full_train=args.full_train, variants=tuple(dict.fromkeys(args.variants or ())))


def report_text(out: ElaOutput) -> str:
    res = out.results
    v = {x.name: x for x in res.variants}
    rows = []
    for x in res.variants:
        e = x.extra
        acc = f"{100 * x.accuracy:.2f}" + (f" ± {100 * e['accuracy_std']:.2f}" if len(e["seeds"]) > 1 else "")
        ci = x.accuracy_ci
        ci_text = f"{100 * ci['low']:.1f}-{100 * ci['high']:.1f}" if ci else "-"
        step = e.get("step_time_ms")
        skipped = e.get("skipped_per_seed")
        rows.append([
            x.name, e["model"], acc, ci_text, fmt_count(x.params), fmt_count(x.macs_executed),
            f"{e['epoch_time_s']:.1f} ({e['epoch_time_iqr_s']:.1f})", _ratio_text(e.get("epoch_time_ratio_vs_mrla_b")),
            f"{step['median']:.0f} ({step['iqr']:.0f})" if step else "-",
            _ratio_text(e.get("step_time_ratio_vs_mrla_b")),
            "/".join(str(len(s)) for s in skipped) + f" of {e['attention_layers']}" if skipped else "-",
        ])
    seeds = v["ela"].extra["seeds"]
    rec = v["ela"].extra["recipe"]
    lines = [
        f"{res.model} on {res.dataset}, seeds {seeds}, {res.env['threads']} threads; {rec['epochs']} epochs, "
        f"{rec['optimizer']} lr {rec['lr']:g}, batch {rec['batch_size']}, {rec['train_samples']} train / "
        f"{rec['test_samples']} test samples"
        + (" (--full-train: train + val, the whole training split; val is not held out)"
           if rec.get("full_train") else ""),
        text_table(rows, ["variant", "model", "test acc %", "95% CI", "params", "MACs exec", "epoch s (IQR)", "vs B",
                          "step ms (IQR)", "vs B", "skipped"]),
        "",
        "epoch s: median (IQR) over epochs (and seeds) of the training loop's time; the variants trained with "
        "alternating epochs, one at a time, order rotating each round;",
        f"step ms: one SGD step, {', '.join(n for n in VARIANTS if n in v)} interleaved round-robin on the same "
        f"batches (n={v['ela'].extra['step_time_ms']['n']} each over {v['ela'].extra['step_time_ms']['batches']} "
        f"batches of {v['ela'].extra['step_time_ms']['batch']}).",
        "CPU s per epoch (training thread / whole process): " + ", ".join(
            f"{x.name} {x.extra['epoch_thread_cpu_s']:.1f}/{x.extra['epoch_process_cpu_s']:.1f}"
            for x in res.variants),
    ]
    for ev in v["ela"].extra["skip_events_per_seed"][0]:
        rule = f", EBQM rule {ev['rule']}" if ev.get("rule") else ""
        lines.append(f"ELA seed {seeds[0]}: end of epochs {ev['window'][0]}-{ev['window'][1]}: skipped "
                     f"{', '.join(ev['skipped']) or 'none'} ({ev['skipped_total']} in total; KL {ev['kl_norm']}"
                     f"{rule})")
    ela, mb, ml = v["ela"], v.get("mrla-b"), v.get("mrla-l")
    if mb is not None:
        lines.append(f"ELA / MRLA-B epoch time: {ela.extra['epoch_time_ratio_vs_mrla_b']:.2f}  "
                     f"(step time, interleaved: {ela.extra['step_time_ratio_vs_mrla_b']:.2f})")
    lines += [f"ELA - {ref.name.upper()} test accuracy: {100 * (ela.accuracy - ref.accuracy):+.2f} points"
              for ref in (ml, mb) if ref is not None]
    untrained = [n for n in VARIANTS if n not in v]
    if untrained:
        lines.append(f"not trained in this run (--variants): {', '.join(untrained)}")
    lines += [
        "95% CI: Wilson interval of the test accuracy" + (f" (on the test predictions pooled over the "
                                                         f"{len(seeds)} seeds)" if len(seeds) > 1 else "")
        + "; paired on the same test images (bootstrap 95 % CI of the difference, exact McNemar"
        + (", pooled over the seeds" if len(seeds) > 1 else "") + "):",
        *(f"  {c['verdict']}" for c in res.comparisons),
        "figures: " + ", ".join(str(p) for p in out.figures),
        f"wrote {out.results_path}",
    ]
    return "\n".join(lines)


def _ratio_text(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def run_command(args, progress=None) -> CommandReport:
    out = run_ela(spec_from_args(args), options_from_args(args), progress=progress)
    return CommandReport(report_text(out))
