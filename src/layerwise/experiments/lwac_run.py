"""``layerwise lwac``: dense vs LWAC (and LWAC under latency budgets), side by side, one run.

Steps: train (or load, or reuse the cached) base model trained for bypass (stochastic depth or
branch dropout, see :mod:`layerwise.lwac.robust`); attach ACUs; for ``--policy learned`` train
the gates jointly with the network (straight-through hard gates, eq. 5 in its target-rate form,
on the training split); calibrate on the validation split (relevance eq. 3, bypass labels,
controllers, lambda by a cross-fitted sweep); choose the static drop-k baselines (the best k
blocks removed for good, on validation) and, for each, the LWAC operating point with the best
validation accuracy at no more estimated latency (``lwac~drop-K``); evaluate every variant on the
test split at batch 1 (per-input decisions); time them interleaved; energy, peak memory,
executed MACs, per-unit entropy (Table 4), run shares and the share of distinct execution paths;
paired comparisons on the same test images (LWAC against dense, each ``lwac~drop-K`` against its
``static-drop-K``); a budget demonstration with a simulated monitor; figures; ``results.json``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import LayerwiseError
from ..evidence import with_statistics
from ..lwac import LWACConfig, LWACModel, attach, calibrate_lambda, check_budget, dense_reference_ms
from ..lwac.config import LWACError, check_latency_ms
from ..lwac.finetune import FineTuneConfig, train_learned_gates
from ..lwac.static import greedy_drop_sets, static_model
from ..lwac.shallow import ShallowFamily, nearest_by_latency, pick_depths, shallow_family
from ..lwac.contention import CONTROLLERS, PLACEMENTS, measure_under_contention
from ..lwac.levels import measure_levels
from .common import limit_split
from ..lwac.policy import PolicyChoice, PolicyStats, choose_policy
from ..lwac.monitor import ResourceMonitor, SimulatedMonitor, cpu_contention, draining_battery, merge_traces
from ..lwac.robust import branch_dropout, residual_model_kwargs
from ..measure import artifact_size, compare_latency, count_macs, count_params, measure_energy, peak_memory
from ..models import build_model
from ..models.registry import ModelConfigError
from ..results import Results, Variant, env_info, write_results
from ..train import TrainConfig, load_weights, train
from ..train.checkpoint import load_checkpoint
from ..train.loop import CHECKPOINT_NAME
from ..viz import lwac as figs
from .common import (CommandReport, RunSpec, add_common_arguments, check_device, deprecated_alias, example_input, fmt_count,
                     load_data_for_model, out_dir, seed_everything, set_threads, spec_from_args, text_table)

log = logging.getLogger(__name__)


@dataclass
class LWACOptions:
    budgets: list[float] = field(default_factory=list)
    budgets_ms: list[float] = field(default_factory=list)  # absolute budgets, ms per input
    epochs: int = 30
    drop_path: float = 0.2
    branch_drop: float = 0.3
    policy: str = "auto"  # "auto": neural or heuristic, whichever is faster on validation within tolerance
    tolerance: float = 0.005  # accuracy drop allowed on (cross-fitted) validation when choosing lambda
    n: int = 300  # timed calls per variant
    warmup: int = 20
    stream: int = 300  # inferences per phase of the budget demonstration
    settle: int = 400  # inferences a budget variant runs before it is timed
    grid: int = 21
    quick: bool = False
    static_k: list[int] | None = None  # the static drop-k baselines (None: 1..min(4, bypassable units))
    gate_epochs: int = 10  # --policy learned: joint training epochs
    gate_target: float = 0.5  # --policy learned: target run rate of each gate (eq. 5, target-rate form)
    gate_delta: float = 1.0  # --policy learned: eq. (5) cost weight
    gate_beta: float = 0.01  # --policy learned: eq. (5) smoothness weight
    shallow: bool | None = None  # shallower-network baselines (None: on when the base's recipe is known)
    shallow_blocks: list[int] | None = None  # blocks per stage of the shallower nets (None: nearest LWAC's points)
    shallow_max: int = 3  # at most this many shallower nets (automatic choice)
    contention: int = 0  # spinner processes, each loading one core, while the absolute budgets are measured
    contention_n: int = 300  # inputs per arm in the contention measurement (not cut by --quick)
    contention_placement: str = "same"  # where the spinners run against this process (contention.spinners)
    budget_controller: str = "pi"  # for absolute budgets: pi (continuous lambda) or levels (hold a measured depth)
    contention_settle: int = 200  # inferences LWAC's controller runs under each condition before it is timed

    def validate(self) -> "LWACOptions":
        self.budgets = [check_budget(b) for b in self.budgets]
        self.budgets_ms = [check_latency_ms(b) for b in self.budgets_ms]
        if self.policy not in ("auto", "neural", "heuristic", "learned"):
            raise LWACError(f"--policy must be 'auto', 'neural', 'heuristic' or 'learned', not {self.policy!r}")
        if self.static_k is not None and any(k < 1 for k in self.static_k):
            raise LWACError(f"--static-k takes block counts >= 1, not {self.static_k}")
        if self.gate_epochs < 1:
            raise LWACError(f"--gate-epochs must be >= 1, not {self.gate_epochs}")
        if not 0.0 <= self.gate_target <= 1.0:
            raise LWACError(f"--gate-target is the fraction of inputs each gate runs on, in [0, 1], not {self.gate_target}")
        if not 0.0 <= self.tolerance < 1.0:
            raise LWACError(f"--max-drop must be percentage points in [0, 100), not {100 * self.tolerance:g}")
        if self.shallow_blocks is not None and any(n < 1 for n in self.shallow_blocks):
            raise LWACError(f"--shallow-blocks takes blocks per stage >= 1, not {self.shallow_blocks}")
        if self.shallow is False and self.shallow_blocks:
            raise LWACError("--no-shallow and --shallow-blocks contradict each other: drop one of them")
        if self.contention < 0:
            raise LWACError(f"--contention is a number of cores to load (0, 1, ...), not {self.contention}")
        if self.contention and not self.budgets_ms:
            raise LWACError("--contention measures inputs against an absolute budget: add --latency-budget-ms MS")
        if self.budget_controller not in CONTROLLERS:
            raise LWACError(f"--budget-controller {self.budget_controller!r}: use one of {', '.join(CONTROLLERS)}")
        if self.budget_controller != "pi" and not self.budgets_ms:
            raise LWACError("--budget-controller levels holds an absolute budget: add --latency-budget-ms MS")
        if self.contention_n < 10:
            raise LWACError(f"--contention-n must be >= 10 inputs, not {self.contention_n}")
        if self.quick:
            self.epochs, self.n, self.warmup, self.stream, self.settle, self.grid = \
                min(self.epochs, 2), min(self.n, 20), 3, 40, 20, 7
            self.gate_epochs = min(self.gate_epochs, 1)
        return self


# What `lwac` does with a model none of whose units can be skipped (a plain CNN-LSTM: its conv
# blocks have no shortcut, its LSTM stage changes shape): LWAC's own eq. (1), h~_i = alpha_i * h_i,
# with alpha_i from eq. (2) and the heuristic policy (tracked R_i; the neural controllers learn from
# bypass labels, and there are none), lambda chosen on validation as usual. The run completes and
# says so, rather than refusing a paper's table; the latency it reports is the honest one.
SOFT_MODE_NOTE = ("no unit of this model can be bypassed (no residual shortcut, no fixed-width branch), so LWAC "
                  "scales each unit's output by its alpha (eq. 1, soft mode, heuristic policy) and skips nothing: "
                  "its latency is the dense model's plus the ACUs' overhead, and no static drop-k baseline exists")


# ---- base model -------------------------------------------------------------------------------

def _build_base(spec: RunSpec, data, opts: LWACOptions):
    seed_everything(spec.seed)
    kwargs = {}
    if spec.model == "multibranch-cnn" and data.info.get("channel_groups"):
        kwargs["channel_groups"] = data.info["channel_groups"]  # e.g. accelerometer / gyroscope
    try:
        model = build_model(spec.model, data.input_shape, data.num_classes, **kwargs,
                            **residual_model_kwargs(opts.drop_path))
        how = f"stochastic depth (drop_path {opts.drop_path}, constant) + zero-init last BN of each residual branch"
    except ModelConfigError:  # not a residual zoo model
        seed_everything(spec.seed)
        model = build_model(spec.model, data.input_shape, data.num_classes, **kwargs)
        how = "plain"
    return model, how


def prepare_base(spec: RunSpec, data, opts: LWACOptions, directory: Path, progress=None) -> tuple[torch.nn.Module, dict]:
    """The base model: ``--checkpoint``, else the cached ``DIR/base/checkpoint.pt``, else trained now."""
    model, how = _build_base(spec, data, opts)
    if spec.checkpoint is not None:
        load_weights(model, spec.checkpoint)
        info = {"source": f"--checkpoint {spec.checkpoint}", "training": "unknown (given checkpoint)"}
        recipe = checkpoint_recipe(spec.checkpoint)
        if recipe is not None:
            info["config"], info["train_size"] = recipe
        return model.to(spec.device).eval(), info
    base_dir = directory / "base"
    config = TrainConfig(epochs=opts.epochs, seed=spec.seed, device=spec.device, augment=spec.augment)
    resume = (base_dir / CHECKPOINT_NAME).is_file()
    with branch_dropout(model, opts.branch_drop, seed=spec.seed) as n_branches:
        result = train(model, data, config, out_dir=base_dir, resume=resume, progress=progress)
    if result.interrupted:
        raise LayerwiseError(f"base training interrupted; rerun the same command to resume from {base_dir}")
    if n_branches:
        how = f"branch dropout p={opts.branch_drop} on {n_branches} branches (lwac.robust.branch_dropout)"
    info = {"source": f"trained here, cached in {base_dir / CHECKPOINT_NAME}" + (" (resumed/reused)" if resume else ""),
            "training": how, "config": asdict(config), "train_size": len(data.train),
            "final_val_acc": result.final_val_acc}
    return model.eval(), info


def checkpoint_recipe(path) -> tuple[dict, int | None] | None:
    """The training config a layerwise checkpoint recorded (``config``) and the size of the
    training split it was trained on (``run.train_size``; None if not recorded), or None for a
    plain state_dict or a checkpoint without a config."""
    try:
        ck = load_checkpoint(path)
    except LayerwiseError:
        return None
    cfg = ck.get("config")
    if not (isinstance(cfg, dict) and cfg):
        return None
    n = (ck.get("run") or {}).get("train_size")
    return dict(cfg), (int(n) if isinstance(n, int) and n > 0 else None)


# ---- the shallower-network baselines ------------------------------------------------------------

def shallow_recipe(spec: RunSpec, opts: LWACOptions, base_info: dict) -> tuple[TrainConfig | None, str]:
    """The training config of the shallower nets: the base's, as recorded (trained here, or the
    ``config`` of a ``--checkpoint`` written by layerwise); None when unknown. Under ``--quick``
    the epochs are capped at the command's."""
    rec = base_info.get("config")
    if not rec:
        return None, "the base's training recipe is unknown (a --checkpoint without a recorded config)"
    config = TrainConfig.from_dict(dict(rec))
    config.device = spec.device
    if opts.quick:
        config.epochs = min(config.epochs, opts.epochs)
    return config, "the base's recipe (" + ("trained here" if spec.checkpoint is None else
                                             f"recorded in {spec.checkpoint}") + ")"


def prepare_shallow(spec: RunSpec, data, opts: LWACOptions, family: ShallowFamily, ns: list[int],
                    config: TrainConfig, directory: Path, progress=None) -> dict[str, tuple[torch.nn.Module, dict]]:
    """Train (or reuse from ``DIR/shallow-<name>/checkpoint.pt``) each shallower member with
    ``ns[i]`` blocks per stage, built as the base was (same stochastic depth and zero-init), on
    ``data.train`` (the caller cuts it to the base's training-split size)."""
    out = {}
    for n in ns:
        name = family.name(n)
        seed_everything(spec.seed)
        model = family.build(n, data.input_shape, data.num_classes, **residual_model_kwargs(opts.drop_path))
        where = directory / f"shallow-{name}"
        resume = (where / CHECKPOINT_NAME).is_file()
        result = train(model, data, config, out_dir=where, resume=resume, progress=progress)
        if result.interrupted:
            raise LayerwiseError(f"training of the shallower {name} interrupted; rerun the same command to resume "
                                 f"from {where}")
        out[f"shallow-{name}"] = (model.eval(), {
            "blocks_per_stage": n, "depth_name": name, "base_blocks_per_stage": family.n,
            "source": f"trained here, cached in {where / CHECKPOINT_NAME}" + (" (resumed/reused)" if resume else ""),
            "training": f"stochastic depth (drop_path {opts.drop_path}, constant) + zero-init last BN, as the base",
            "config": asdict(config), "train_size": len(data.train), "final_val_acc": result.final_val_acc})
    return out


def _check_shallow_blocks(model: str, blocks: list[int], family: ShallowFamily | None = None) -> None:
    family = family or shallow_family(model)
    if family is None:
        raise LWACError(f"--shallow-blocks: {model} has no shallower sibling in the zoo (the CIFAR ResNets "
                        "resnet{9n+2} and resnet{6n+2}-basic have); drop --shallow-blocks")
    bad = [n for n in blocks if n >= family.n]
    if bad:
        raise LWACError(f"--shallow-blocks {bad}: {model} has {family.n} blocks per stage; a shallower network "
                        f"has 1..{family.n - 1}")


def shallow_baselines(spec: RunSpec, data, opts: LWACOptions, base: torch.nn.Module, base_info: dict, calib: dict,
                      static_info: dict, lw: LWACModel, val_inputs, x1, directory: Path, threads, progress=None):
    """The shallower nets (VALIDATION and training split only) and, for each, the LWAC point with
    the best validation accuracy at no more estimated latency (``lwac~shallow-<name>``).

    Depths: ``--shallow-blocks``, else those whose batch-1 latency (timed untrained, interleaved
    with the base, on validation inputs) is nearest LWAC's operating points (the deployed lambda
    and each ``lwac~drop-K``), at most ``--shallow-max``."""
    info: dict = {"enabled": False}
    if opts.shallow is False:
        info["note"] = "switched off (--no-shallow)"
        return {}, {}, info
    family = shallow_family(spec.model, base)
    if family is None or not family.candidates():
        info["note"] = (f"{spec.model} has no shallower sibling in the zoo (the CIFAR ResNets resnet{{9n+2}} and "
                        "resnet{6n+2}-basic have)" if family is None else f"{spec.model} is already the shallowest")
        return {}, {}, info
    config, how = shallow_recipe(spec, opts, base_info)
    if config is None:
        if not opts.shallow_blocks and not opts.shallow:
            info["note"] = how + ": no shallower baseline (pass --shallow-blocks N to train one with --epochs)"
            return {}, {}, info
        config = TrainConfig(epochs=opts.epochs, seed=spec.seed, device=spec.device, augment=spec.augment)
        how += "; trained with this command's --epochs instead"
    if opts.shallow_blocks:
        _check_shallow_blocks(spec.model, opts.shallow_blocks, family)
    cands = family.candidates() if not opts.shallow_blocks else sorted(set(opts.shallow_blocks))
    torch.manual_seed(spec.seed)
    untrained = {n: family.build(n, data.input_shape, data.num_classes).to(x1.device).eval() for n in cands}
    timing = compare_latency({"dense": (_Cycle(base, val_inputs), x1),
                              **{f"n{n}": (_Cycle(m, val_inputs), x1) for n, m in untrained.items()}},
                             n=max(20, opts.n // 5), warmup=opts.warmup, threads=threads)
    ratios = {n: timing[f"n{n}"].median_ms / timing["dense"].median_ms for n in cands}
    targets = [calib["chosen"]["est_latency_ratio"]] + [m["lwac_est_latency_ratio"]
                                                        for m in static_info.get("matched", {}).values()]
    ns = cands if opts.shallow_blocks else pick_depths(ratios, targets, opts.shallow_max)
    n_train = base_info.get("train_size")
    if n_train and n_train < len(data.train):  # the base saw a --train-limit subset: the same one (fixed_split)
        data = limit_split(data, "train", n_train)
        how += f", on the base's {n_train} training samples"
    log.info("shallower baselines: %s (val latency ratios %s; LWAC targets %s)",
             [family.name(n) for n in ns], {family.name(n): round(r, 3) for n, r in ratios.items()},
             [round(t, 3) for t in targets])
    trained = prepare_shallow(spec, data, opts, family, ns, config, directory, progress)
    overhead = float(static_info.get("decision_overhead_ratio_val", 0.0))
    matched = {}
    for name, (_, sinfo) in trained.items():
        r = ratios[sinfo["blocks_per_stage"]]
        sinfo["val_latency_ratio_untrained"] = r
        sinfo["recipe"] = how
        point = match_lambda(calib["sweep"], r - overhead)
        m = lw.clone()
        m.set_lambda(point["lam"])
        matched[name] = (m, point["lam"], {"shallow_val_latency_ratio": r, "lwac_val_accuracy": point["accuracy"],
                                           "lwac_est_latency_ratio": point["est_latency_ratio"], "lam": point["lam"]})
    info.update(enabled=True, recipe=how, family=f"{spec.model}: {family.n} blocks per stage",
                candidates={family.name(n): ratios[n] for n in cands}, lwac_targets=targets,
                trained=[family.name(n) for n in ns])
    return trained, matched, info


# ---- evaluation helpers -------------------------------------------------------------------------

class _Cycle:
    """A callable for compare_latency / measure_energy: each call runs ``fn`` on the next input."""

    def __init__(self, fn, inputs: list[torch.Tensor]):
        self.fn, self.inputs, self.k = fn, inputs, 0

    def __call__(self, *_):
        x = self.inputs[self.k]
        self.k = (self.k + 1) % len(self.inputs)
        return self.fn(x)


class _Pinned:
    def __init__(self, lwac: LWACModel):
        self.lwac = lwac

    def __call__(self, x):
        st = self.lwac.state
        st.pinned = True
        try:
            return self.lwac(x)
        finally:
            st.pinned = False


@torch.no_grad()
def _predict(fn, inputs: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([fn(x).argmax(1)[0] for x in inputs])


def _confusion(y: torch.Tensor, pred: torch.Tensor, k: int) -> np.ndarray:
    cm = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(y.tolist(), pred.tolist()):
        cm[t, p] += 1
    return cm


def _entropy_matrix(records) -> np.ndarray:
    return np.array([[r[2] for r in unit] for unit in records]).T if records and records[0] else np.zeros((0, 0))


def calibrate(lwac: LWACModel, data, opts: LWACOptions, dense_ms: float, device: str,
              extra_lams: tuple[float, ...] = ()) -> dict:
    """Relevance, labels, controllers, lambda range and the chosen lambda (all on validation):
    :func:`layerwise.lwac.calibrate_lambda`, the same call :func:`layerwise.lwac.apply` makes.

    ``learned`` policy: the controllers were trained with the network (on the training split);
    here only the lambda sweep runs (``extra_lams``: the training lambda, so the trained
    operating point is one of the candidates)."""
    cal = calibrate_lambda(lwac, data.val, dense_ms=dense_ms, grid=opts.grid, tolerance=opts.tolerance,
                           extra_lams=extra_lams, device=device)
    out = cal.to_json()
    out.update(relevance_normalised=list(lwac.state.relevance), cost=list(lwac.state.cost))
    return out


def select_policy(models: dict[str, LWACModel], calibs: dict[str, dict], val_inputs, x1, opts: LWACOptions,
                  threads) -> PolicyChoice:
    """Validation numbers per calibrated policy -> :func:`layerwise.lwac.choose_policy`.

    Accuracy: the (cross-fitted) validation accuracy at the policy's chosen lambda; latency: the
    median batch-1 latency on validation inputs, the candidates timed interleaved."""
    lat = compare_latency({k: (_Cycle(m, val_inputs), x1) for k, m in models.items()},
                          n=max(20, opts.n // 2), warmup=opts.warmup, threads=threads)
    stats = {k: PolicyStats(val_accuracy=calibs[k]["chosen"]["accuracy"], val_latency_ms=lat[k].median_ms,
                            val_iqr_ms=lat[k].iqr_ms, est_latency_ratio=calibs[k]["chosen"]["est_latency_ratio"])
             for k in models}
    dense_val = max(c["dense_val_accuracy"] for c in calibs.values())
    choice = choose_policy(stats, dense_val, opts.tolerance)
    log.info("policy on validation: %s (%s)", choice.policy, choice.reason)
    return choice


# ---- the command --------------------------------------------------------------------------------

@dataclass
class LWACOutput:
    results_path: Path
    results: Results
    table: list[list]
    checks: list[str]


def run_lwac(spec: RunSpec, opts: LWACOptions, progress=None) -> LWACOutput:
    opts.validate()
    if opts.shallow_blocks:  # refused before any training
        _check_shallow_blocks(spec.model, opts.shallow_blocks)
    device = check_device(spec.device)
    threads = set_threads(spec.threads)
    data = load_data_for_model(spec)
    if len(data.val) == 0:
        raise LWACError(f"{data.label} has an empty validation split: LWAC calibrates on validation data "
                        "(never on test); use a dataset with a validation split")
    directory = out_dir(spec, "lwac")
    base, base_info = prepare_base(spec, data, opts, directory, progress)
    x1 = example_input(data, 1, device)
    val_inputs = [data.val[i][0].unsqueeze(0).to(device) for i in range(min(len(data.val), 100))]

    # ---- attach + calibrate + choose the policy: VALIDATION only (the test split is not read yet)
    policies = ["neural", "heuristic"] if opts.policy in ("auto", "neural") else [opts.policy]
    # the dense batch-1 latency reference, as lwac.apply measures it
    dense_est = dense_reference_ms(base, val_inputs, n=max(20, opts.n // 5), warmup=opts.warmup, threads=threads)
    models: dict[str, LWACModel] = {}
    calibs: dict[str, dict] = {}
    gate_info = None
    mode, first = "hard", attach(base, x1, LWACConfig(policy=policies[0]), threads=threads)
    if not first.bypassable:   # nothing can be skipped: calibrate the units' scale instead (SOFT_MODE_NOTE)
        mode, policies, first = "soft", ["heuristic"], None
        log.warning("%s: %s", spec.model, SOFT_MODE_NOTE)
    for pol in policies:
        models[pol] = first if first is not None and pol == policies[0] else \
            attach(base, x1, LWACConfig(policy=pol, mode=mode), threads=threads)
        extra_lams: tuple[float, ...] = ()
        if pol == "learned":  # gates trained jointly with the network, on the TRAINING split
            gate_info = train_learned_gates(models[pol], data.train, FineTuneConfig(
                epochs=opts.gate_epochs, target=opts.gate_target, delta=opts.gate_delta, beta=opts.gate_beta,
                freeze_base=False, seed=spec.seed))
            extra_lams = (gate_info["lam_train"],)
        log.info("LWAC calibration, %s policy (%s mode), on %d validation samples: relevance (eq. 3)%s, a "
                 "%d-point lambda sweep ...", pol, mode, len(data.val),
                 ", bypass labels and controllers" if pol == "neural" else "", opts.grid)
        tick = time.monotonic()
        calibs[pol] = calibrate(models[pol], data, opts, dense_est, device, extra_lams)
        log.info("LWAC calibration, %s policy: lambda %.4g chosen in %.1f s", pol, calibs[pol]["lam"],
                 time.monotonic() - tick)
    log.info("LWAC: choosing the policy on validation (batch-1 latency, interleaved) ...")
    choice = select_policy(models, calibs, val_inputs, x1, opts, threads)
    chosen = choice.policy if opts.policy == "auto" or mode == "soft" else opts.policy
    lw, calib = models[chosen], calibs[chosen]
    others = {f"lwac-{pol}": models[pol] for pol in policies if pol != chosen}  # the other policy, reported beside

    # ---- static drop-k baselines and the LWAC point matched to each: VALIDATION only
    log.info("LWAC: static drop-k baselines on validation ...")
    statics, matched, static_info = static_baselines(lw, calib, data, opts, val_inputs, x1, dense_est, device, threads)
    # ---- the shallower nets of the same family, trained with the base's recipe (train + VALIDATION)
    shallows, shallow_matched, shallow_info = shallow_baselines(spec, data, opts, base, base_info, calib, static_info,
                                                                lw, val_inputs, x1, directory, threads, progress)

    test_inputs = [data.test[i][0].unsqueeze(0).to(device) for i in range(len(data.test))]
    y_test = torch.as_tensor([data.test[i][1] for i in range(len(data.test))])
    n_lat_inputs = test_inputs[: min(len(test_inputs), 100)]
    overhead = lw.clone()

    variants: dict[str, object] = {"dense": base, "lwac": lw, "acu-overhead (alpha=1)": _Pinned(overhead)}
    variants.update(others)
    for k, (st_model, st_set) in statics.items():
        variants[f"static-drop-{k}"] = st_model
        variants[f"lwac~drop-{k}"] = matched[k][0]
    for sname, (s_model, _) in shallows.items():
        variants[sname] = s_model
        variants["lwac~" + sname] = shallow_matched[sname][0]
    for oname, om in others.items():  # the other policy's machinery cost too (the neural one adds a dot product per gate)
        variants[f"acu-overhead {oname[5:]} (alpha=1)"] = _Pinned(om.clone())
    budgeted: dict[str, LWACModel] = {}
    for f in opts.budgets:
        b = lw.clone()
        b.set_budget(f)  # target: f x the online dense-latency estimate (follows machine-load drift)
        budgeted[f"lwac@{f:g}"] = b
        variants[f"lwac@{f:g}"] = b
    levels = (measure_levels(lw, val_inputs, n=max(20, opts.n), warmup=opts.warmup, threads=threads)
              if opts.budgets_ms and (opts.budget_controller == "levels" or opts.contention) else None)
    for ms in opts.budgets_ms:
        b = lw.clone()
        # absolute: ms per input, whatever the machine's load
        b.set_latency_target(ms, levels=levels if opts.budget_controller == "levels" else None)
        budgeted[f"lwac@{ms:g}ms"] = b
        variants[f"lwac@{ms:g}ms"] = b

    # ---- accuracy at batch 1, per-input decisions; records for Table 4 / Fig. 6
    preds, records, shares, macs_exec = {}, {}, {}, {}
    for name, fn in variants.items():
        if isinstance(fn, LWACModel):
            if name in budgeted:
                _settle(fn, test_inputs, opts.settle)
            fn.reset_counts()
            with fn.recording() as st:
                preds[name] = _predict(fn, test_inputs)
            records[name] = [list(r) for r in st.records]
            shares[name] = fn.run_share()
            macs_exec[name] = fn.macs_executed()
        elif name == "dense":
            with overhead.recording() as st:  # pinned = the dense model's exact outputs, recorded
                preds[name] = _predict(_Pinned(overhead), test_inputs)
            records[name] = [list(r) for r in st.records]
            shares[name] = [1.0] * len(lw.units)
            macs_exec[name] = float(lw.dense_macs)
            overhead.reset_counts()
        elif name in shallows:  # another network: no LWAC unit of the base
            preds[name] = _predict(fn, test_inputs)
            shares[name] = []
            macs_exec[name] = float(count_macs(fn, x1).total)
        elif name.startswith("static-drop-"):
            removed = set(statics[int(name.rsplit("-", 1)[1])][1].units)
            preds[name] = _predict(fn, test_inputs)
            shares[name] = [0.0 if i in removed else 1.0 for i in range(len(lw.units))]
            macs_exec[name] = float(count_macs(fn, x1).total)
        else:
            preds[name] = _predict(fn, test_inputs)
            shares[name] = [1.0] * len(lw.units)
            macs_exec[name] = float(lw.dense_macs + _controller_macs(fn))
    # per-image hits of that same batch-1 pass; the accuracy is exactly correct / n (float64)
    hits = {k: (p.cpu() == y_test) for k, p in preds.items()}
    acc = {k: int(h.sum()) / h.numel() for k, h in hits.items()}

    # ---- latency, interleaved; budget variants keep controlling while timed
    for b in budgeted.values():
        _settle(b, n_lat_inputs, opts.settle)
    lat = compare_latency({k: (_Cycle(fn, n_lat_inputs), x1) for k, fn in variants.items()},
                          n=opts.n, warmup=opts.warmup, threads=threads)
    # each shallower net against the LWAC operating point (per-input decisions, no budget) nearest in latency
    lwac_points = {k: lat[k].median_ms for k, fn in variants.items() if isinstance(fn, LWACModel) and k not in budgeted}
    nearest = {s: nearest_by_latency(lat[s].median_ms, lwac_points) for s in shallows}
    energy = {k: measure_energy(_Cycle(fn, n_lat_inputs), n=max(10, opts.n // 3), device=device)
              for k, fn in variants.items() if not k.startswith("acu-")}
    memory = {k: peak_memory(lambda fn=fn: [fn(x) for x in n_lat_inputs[:20]]) for k, fn in variants.items()
              if not k.startswith("acu-")}

    # ---- --contention: real contention (spinning processes) against each absolute budget
    contention = {}
    for ms in opts.budgets_ms if opts.contention else []:
        contention[f"lwac@{ms:g}ms"] = measure_under_contention(
            lw, base, n_lat_inputs, ms, n=opts.contention_n, settle=opts.contention_settle, cores=opts.contention,
            placement=opts.contention_placement, controller=opts.budget_controller, levels=levels)

    # ---- budget demonstration with a simulated monitor (budget change, contention, draining battery)
    demo = _budget_demo(lw, test_inputs, lat["dense"].median_ms, opts)

    # ---- figures
    fig_names = _figures(directory, data, lw, variants, acc, lat, energy, shares, records, preds, y_test, calib,
                         demo, lat["dense"].median_ms)

    # ---- results
    params = count_params(base)
    size = artifact_size(base).bytes
    lw_params = sum(p.numel() for p in lw.parameters())
    lw_size = artifact_size(lw).bytes
    unit_names = [u.name for u in lw.units]
    out_variants = []
    for name, fn in variants.items():
        is_lwac = name != "dense" and not name.startswith("static-drop-") and name not in shallows
        en = energy.get(name)
        mem = memory.get(name)
        extra = {"unit_run_share": dict(zip(unit_names, shares[name])),
                 "latency_ratio_vs_dense": lat[name].median_ms / lat["dense"].median_ms,
                 "latency_source": lat[name].source}
        if name in records and records[name]:
            ent = [float(np.mean([r[2] for r in unit])) if unit else None for unit in records[name]]
            extra["unit_entropy_nats"] = dict(zip(unit_names, ent))
            extra["mean_entropy_nats"] = float(np.mean([e for e in ent if e is not None]))
            if is_lwac:
                extra["unit_mean_alpha"] = {u: float(np.mean([r[0] for r in unit])) if unit else None
                                            for u, unit in zip(unit_names, records[name])}
        if name in records and records[name] and is_lwac and not name.startswith("acu-"):
            extra["execution_paths"] = path_stats(records[name])
        if name.startswith("static-drop-"):
            k = int(name.rsplit("-", 1)[1])
            extra["static_drop"] = statics[k][1].to_json()
            extra["execution_paths"] = {"distinct": 1, "n": len(test_inputs), "share": 1 / len(test_inputs),
                                        "top_path_share": 1.0}
        if name.startswith("lwac~drop-"):
            k = int(name.rsplit("-", 1)[1])
            extra["matched_to"] = f"static-drop-{k}"
            extra["lam"] = matched[k][1]
            extra["matching"] = static_info["matched"][str(k)]
            extra["latency_ratio_vs_static"] = lat[name].median_ms / lat[f"static-drop-{k}"].median_ms
        if name in shallows:
            s_info = dict(shallows[name][1])
            near = nearest[name]
            extra["shallow"] = s_info
            extra["nearest_lwac"] = {"name": near, "latency_ms": lat[near].median_ms, "accuracy": acc[near],
                                     "latency_ratio_lwac_vs_shallow": lat[near].median_ms / lat[name].median_ms}
            extra["execution_paths"] = {"distinct": 1, "n": len(test_inputs), "share": 1 / len(test_inputs),
                                        "top_path_share": 1.0}
        if name.startswith("lwac~shallow-"):
            sname = name[len("lwac~"):]
            extra["matched_to"] = sname
            extra["lam"] = shallow_matched[sname][1]
            extra["matching"] = shallow_matched[sname][2]
            extra["latency_ratio_vs_shallow"] = lat[name].median_ms / lat[sname].median_ms
        if en is None:
            extra["energy_j"] = "not measured for the overhead check (latency only)"
        if mem is None:
            extra["peak_mem_bytes"] = "not measured for the overhead check (latency only)"
        else:
            extra["memory_source"] = mem.source
        if name in budgeted and name.endswith("ms"):
            b = budgeted[name]
            t = float(name.split("@")[1][:-2])
            extra["budget"] = {"target_ms": t, "target": "absolute (ms per input)", "dense_ms_at_setup": dense_est,
                               "steady_state_median_ms": lat[name].median_ms,
                               "within_10pct": abs(lat[name].median_ms - t) <= 0.1 * t,
                               # out of reach: over 1.1 t with every unit it can bypass bypassed (levels: the fastest)
                               "reachable": lat[name].median_ms <= 1.1 * t or (
                                   b.budget.k < len(b.budget.levels) - 1 if opts.budget_controller == "levels"
                                   else b.state.lam < b.lam_range[1] * 0.999),
                               "final_lam": b.state.lam, "controller": opts.budget_controller}
            if opts.budget_controller == "levels":
                extra["budget"]["levels"] = [lv.to_json() for lv in levels]
                extra["budget"]["final_slowdown"] = b.budget.slowdown
            if name in contention:
                extra["budget"]["contention"] = contention[name].to_json()
        elif name in budgeted:
            b = budgeted[name]
            f = float(name.split("@")[1])
            extra["budget"] = {"fraction": f, "target_ms_final": b.budget.target_ms, "dense_ms_at_setup": dense_est,
                               "online_dense_estimate_ms": b.budget.dense_ms, "target": "relative (online estimate)",
                               "steady_state_ratio_vs_dense": lat[name].median_ms / lat["dense"].median_ms,
                               "within_10pct": abs(lat[name].median_ms / lat["dense"].median_ms - f) <= 0.1 * f,
                               "final_lam": b.state.lam}
        if name == "lwac":
            extra["calibration"] = {k: v for k, v in calib.items() if k != "sweep"}
            extra["lam"] = lw.state.lam
            extra["static_baselines"] = {k: v for k, v in static_info.items() if k != "matched"}
            extra["shallow_baselines"] = shallow_info
            if gate_info is not None:
                extra["learned_gates"] = gate_info
            extra["policy"] = chosen
            extra["mode"] = mode
            extra["policy_choice"] = dict(choice.to_json(), requested=opts.policy, used=chosen)
        if name in others:
            pol = name.split("-", 1)[1]
            extra["calibration"] = {k: v for k, v in calibs[pol].items() if k != "sweep"}
            extra["policy"] = pol
        extra["accuracy_drop_pt"] = 100 * (acc["dense"] - acc[name])
        if name.startswith("static-drop-") or name in shallows:
            v_macs, v_params, v_size = int(macs_exec[name]), count_params(fn), artifact_size(fn).bytes
        else:
            v_macs = int(lw.dense_macs) + _controller_macs(fn)
            v_params, v_size = (lw_params, lw_size) if is_lwac else (params, size)
        out_variants.append(Variant(
            name=name, accuracy=acc[name], macs=v_macs,
            macs_executed=int(round(macs_exec[name])), params=v_params,
            size_bytes=v_size, latency_ms=lat[name].to_json(),
            peak_mem_bytes=mem.bytes if mem is not None else None,
            energy_j=en.to_json() if en is not None else None, extra=extra))
    out_variants[0].extra.update(base=base_info, units=[u.to_json() for u in lw.units], dataset_info=data.info,
                                 test_n=len(test_inputs), budget_demo=demo["summary"],
                                 monitor_notes=list(demo["monitor_notes"]))
    results = Results(method="lwac", model=spec.model, dataset=data.label,
                      env=env_info(device, threads, spec.seed), variants=out_variants, figures=fig_names,
                      quick=opts.quick)
    # every accuracy is a batch-1 TEST accuracy: Wilson interval, per-image hits, and the method
    # against dense on the same images (also each budgeted variant and the other policy)
    results = with_statistics(results, hits, compare=comparison_pairs(list(variants), nearest), seed=spec.seed)
    out_variants = results.variants
    path = write_results(directory, results)
    table, checks = _summary(out_variants, acc, lat, len(test_inputs))
    return LWACOutput(path, results, table, checks)


def comparison_pairs(names: list[str], nearest: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(method variant, rival) pairs compared on the same test images: LWAC, every budgeted
    variant and the policy not deployed, each against dense; each ``lwac~drop-K`` (LWAC at the
    static baseline's latency) against its ``static-drop-K``; each shallower net against the LWAC
    operating point nearest to it in measured latency (``nearest``: shallow name -> LWAC name)."""
    pairs = [("lwac", "dense")]
    pairs += [(n, "dense") for n in names if n.startswith("lwac@") or n.startswith("lwac-")]
    pairs += [(n, "static-drop-" + n.rsplit("-", 1)[1]) for n in names
              if n.startswith("lwac~drop-") and "static-drop-" + n.rsplit("-", 1)[1] in names]
    pairs += [(lw_name, s) for s, lw_name in (nearest or {}).items() if s in names and lw_name in names]
    return pairs


def path_stats(records) -> dict:
    """The execution paths over the test set: a path is the tuple of per-unit bypass decisions of
    one input. ``distinct``: how many different paths; ``share``: distinct / n; ``top_path_share``:
    the fraction of inputs on the most common path (1.0 = a static network)."""
    n = len(records[0]) if records and records[0] else 0
    if n == 0:
        return {"distinct": 0, "n": 0, "share": 0.0, "top_path_share": 0.0}
    paths: dict[tuple, int] = {}
    for s in range(n):
        key = tuple(bool(unit[s][1]) for unit in records)
        paths[key] = paths.get(key, 0) + 1
    return {"distinct": len(paths), "n": n, "share": len(paths) / n, "top_path_share": max(paths.values()) / n}


def match_lambda(sweep: list[dict], target_ratio: float) -> dict:
    """The validation sweep point with the best validation accuracy whose estimated latency
    ratio is at most ``target_ratio`` (ties: the faster); if none is, the fastest point."""
    ok = [p for p in sweep if p["est_latency_ratio"] <= target_ratio + 1e-9]
    if not ok:
        return min(sweep, key=lambda p: (p["est_latency_ratio"], -p["accuracy"]))
    return max(ok, key=lambda p: (p["accuracy"], -p["est_latency_ratio"]))


def static_baselines(lw: LWACModel, calib: dict, data, opts: LWACOptions, val_inputs, x1, dense_ms: float,
                     device: str, threads):
    """Static drop-k (the best k blocks removed, chosen greedily on validation) from the same
    weights LWAC runs, and for each k the LWAC lambda with the best validation accuracy at no
    more estimated latency: static-k's estimated ratio minus LWAC's measured decision overhead
    (the ACUs at alpha = 1 against the plain network, on validation inputs)."""
    if not lw.bypassable:
        return {}, {}, {"ks": [], "note": "no bypassable unit: no static baseline"}
    ks = sorted(set(opts.static_k or range(1, min(4, len(lw.bypassable)) + 1)))
    ks = [k for k in ks if k <= len(lw.bypassable)]
    sets = {d.k: d for d in greedy_drop_sets(lw, data.val, max(ks), device=device, dense_ms=dense_ms)}
    plain = lw.strip()
    lat = compare_latency({"plain": (_Cycle(plain, val_inputs), x1), "pinned": (_Cycle(_Pinned(lw.clone()), val_inputs), x1)},
                          n=max(20, opts.n // 5), warmup=opts.warmup, threads=threads)
    overhead = max(0.0, lat["pinned"].median_ms / lat["plain"].median_ms - 1.0)
    statics, matched, info = {}, {}, {"ks": ks, "decision_overhead_ratio_val": overhead, "matched": {}}
    for k in ks:
        d = sets[k]
        statics[k] = (static_model(plain, d.names), d)
        point = match_lambda(calib["sweep"], d.est_latency_ratio - overhead)
        m = lw.clone()
        m.set_lambda(point["lam"])
        matched[k] = (m, point["lam"])
        info["matched"][str(k)] = {"static_val_accuracy": d.val_accuracy, "static_est_latency_ratio": d.est_latency_ratio,
                                   "lwac_val_accuracy": point["accuracy"],
                                   "lwac_est_latency_ratio": point["est_latency_ratio"], "lam": point["lam"]}
    info["sets"] = [sets[k].to_json() for k in ks]
    return statics, matched, info


def _controller_macs(fn) -> int:
    m = fn.lwac if isinstance(fn, _Pinned) else fn
    return m.controller_macs() if isinstance(m, LWACModel) else 0


def _settle(b: LWACModel, inputs, steps: int) -> None:
    with torch.no_grad():
        for k in range(steps):
            b(inputs[k % len(inputs)])


def _budget_demo(lw: LWACModel, inputs, dense_ms: float, opts: LWACOptions) -> dict:
    """Phases of ``opts.stream`` inferences: budget 0.7, budget 0.85, budget 0.7 with simulated 1.3x
    contention; a simulated battery drains throughout (raising the pressure multiplier)."""
    demo = lw.clone()
    demo.state.step = 0  # the simulated trace is indexed by inference number from here
    demo.reset_counts()
    n = opts.stream
    trace = merge_traces(draining_battery(3 * n, 100, 20), cpu_contention(3 * n, 2 * n, 3 * n, 1.3))
    demo.use_monitor(SimulatedMonitor(demo.buffer, trace))
    demo.history = []
    phases = [(0.7, 0), (0.85, n), (0.7, 2 * n)]
    summary = []
    with torch.no_grad():
        for f, start in phases:
            demo.set_budget(f, dense_ms)
            for k in range(n):
                demo(inputs[(start + k) % len(inputs)])
            tail = [h["latency_ms"] for h in demo.history[start + n // 2: start + n]]
            summary.append({"budget": f, "target_ms": f * dense_ms, "steady_median_ms": float(np.median(tail)),
                            "ratio_to_dense": float(np.median(tail)) / dense_ms,
                            "contention": 1.3 if start == 2 * n else 1.0})
    # a real monitor, briefly, to record which counters this machine has
    real = ResourceMonitor(demo.buffer)
    state = real.sample_once()
    return {"history": demo.history, "summary": summary, "monitor_notes": state.notes}


def _family(name: str) -> str | None:
    """The curve a variant belongs to in the accuracy-vs-latency figure."""
    if name == "lwac" or name.startswith("lwac~"):
        return "LWAC"
    if name.startswith("static-drop-"):
        return "static drop-k"
    if name.startswith("shallow-"):
        return "shallower nets"
    return None


def _figures(directory, data, lw, variants, acc, lat, energy, shares, records, preds, y_test, calib, demo, dense_ms):
    unit_names = [u.name for u in lw.units]
    names = []
    points = [{"name": k, "latency_ms": lat[k].median_ms, "iqr_ms": lat[k].iqr_ms, "accuracy": acc[k],
               "family": _family(k)} for k in variants]
    names.append(figs.accuracy_vs_latency(directory / "fig2_accuracy_vs_latency.png", points, calib["sweep"],
                                          dense_ms, f"{data.label}: accuracy vs batch-1 latency").name)
    ek = list(energy)
    src = energy[ek[0]].source
    names.append(figs.energy_per_inference(directory / "fig3_energy_per_inference.png", ek,
                                           [energy[k].value_j for k in ek], [energy[k].estimated for k in ek],
                                           src).name)
    names.append(figs.unit_activation_share(directory / "fig4_unit_activation_share.png", unit_names,
                                            [u.macs for u in lw.units], shares["dense"], shares["lwac"]).name)
    k = data.num_classes
    classes = data.classes if data.classes else [str(i) for i in range(k)]
    names.append(figs.confusion_matrices(directory / "fig5_confusion.png", _confusion(y_test, preds["dense"], k),
                                         _confusion(y_test, preds["lwac"], k), classes).name)
    names.append(figs.entropy_heatmap(directory / "fig6_entropy_heatmap.png", _entropy_matrix(records["lwac"]),
                                      unit_names, f"{data.label}: activation entropy with LWAC").name)
    names.append(figs.latency_over_time(directory / "fig7_latency_over_time.png", demo["history"], dense_ms).name)
    return names


def _summary(variants: list[Variant], acc, lat, n_test: int):
    dense = variants[0]
    rows = []
    for v in variants:
        lt = v.latency_ms
        en = v.energy_j
        ci = v.accuracy_ci
        rows.append([v.name, f"{100 * v.accuracy:.2f}",
                     f"{100 * ci['low']:.1f}-{100 * ci['high']:.1f}" if ci else "-",
                     f"{100 * (dense.accuracy - v.accuracy):+.2f}",
                     f"{lt['median']:.3f}", f"{lt['iqr']:.3f}", f"{lt['median'] / dense.latency_ms['median']:.3f}",
                     fmt_count(v.macs_executed),
                     f"{1e3 * en['value']:.2f}{'*' if en['estimated'] else ''}" if en else "-",
                     f"{v.extra.get('mean_entropy_nats', float('nan')):.3f}"])
    checks = []
    point = 100.0 / n_test
    lw = next(v for v in variants if v.name == "lwac")
    if lw.extra.get("mode") == "soft":
        checks.append(f"lwac ran in soft mode: {SOFT_MODE_NOTE}")
    drop = 100 * (dense.accuracy - lw.accuracy)
    ratio = lw.latency_ms["median"] / dense.latency_ms["median"]
    checks.append(f"lwac: accuracy drop {drop:+.2f} pt on test (1 test sample = {point:.2f} pt), "
                  f"latency {ratio:.3f}x dense")
    for ov in (v for v in variants if v.name.startswith("acu-overhead")):
        r = ov.latency_ms["median"] / dense.latency_ms["median"]
        which = "" if ov.name == "acu-overhead (alpha=1)" else f" ({ov.name.split()[1]} policy, not deployed)"
        checks.append(f"ACU overhead with alpha=1, nothing bypassed{which}: {100 * (r - 1):+.1f} %")
    by_name = {v.name: v for v in variants}
    for v in variants:
        if "execution_paths" in v.extra and not v.name.startswith("static-"):
            p = v.extra["execution_paths"]
            checks.append(f"{v.name}: {p['distinct']} distinct execution paths over {p['n']} test inputs "
                          f"(share {p['share']:.3f}; most common path {100 * p['top_path_share']:.1f} % of inputs)")
    for v in variants:
        if v.name.startswith("lwac~drop-"):
            s_ = by_name[v.extra["matched_to"]]
            checks.append(f"{v.name} vs {s_.name}: {100 * v.accuracy:.2f} % vs {100 * s_.accuracy:.2f} % at "
                          f"{v.latency_ms['median']:.3f} vs {s_.latency_ms['median']:.3f} ms "
                          f"({v.extra['latency_ratio_vs_static']:.3f}x the static network's latency)")
    for v in variants:
        if "shallow" in v.extra:
            s_, near = v.extra["shallow"], v.extra["nearest_lwac"]
            nb = s_["blocks_per_stage"]
            checks.append(f"{v.name} ({nb} block{'s' if nb != 1 else ''} per stage, {s_['config']['epochs']} epochs, "
                          f"{s_['recipe']}): {100 * v.accuracy:.2f} % at {v.latency_ms['median']:.3f} ms; nearest "
                          f"LWAC point {near['name']}: {100 * near['accuracy']:.2f} % at {near['latency_ms']:.3f} ms")
    for v in variants:
        if "budget" in v.extra and "target_ms" in v.extra["budget"]:
            b = v.extra["budget"]
            met = b["steady_state_median_ms"] <= b["target_ms"]
            checks.append(f"{v.name}: steady-state median {b['steady_state_median_ms']:.3f} ms against your "
                          f"--latency-budget-ms {b['target_ms']:g}: {'met' if met else 'missed'}"
                          + ("" if b["reachable"] else " (out of reach: every bypassable unit already bypassed)"))
            if "contention" in b:
                c = b["contention"]
                q, k = c["phases"]["quiet"]["lwac"], c["phases"]["contended"]["lwac"]
                checks.append(f"{v.name} {c['verdict']}; quiet: {100 * q['share_within']:.1f} % within; lambda "
                              f"{q['mean_lam']:.3g} -> {k['mean_lam']:.3g}, units bypassed per input "
                              f"{q['mean_bypassed_units']:.2f} -> {k['mean_bypassed_units']:.2f}; load average "
                              f"{c['load_average']['start'][0]:.2f} at the start")
        elif "budget" in v.extra:
            b = v.extra["budget"]
            met = b["steady_state_ratio_vs_dense"] <= b["fraction"]
            checks.append(f"{v.name}: steady-state median {b['steady_state_ratio_vs_dense']:.3f}x dense against "
                          f"your --latency-budget {b['fraction']:g}: {'met' if met else 'missed'}")
    return rows, checks


NAME = "lwac"
HELP = "LWAC: runtime layer calibration that bypasses units under a latency budget"


def add_arguments(p) -> None:
    add_common_arguments(p, training=True)
    p.add_argument("--latency-budget", type=float, nargs="+", default=[], metavar="F",
                   help="also evaluate lwac@F: PI control of lambda to F x dense latency, F in (0, 1]")
    p.add_argument("--latency-budget-ms", type=float, nargs="+", default=[], metavar="MS",
                   help="also evaluate lwac@MSms: PI control of lambda to an absolute MS milliseconds per input")
    p.add_argument("--policy", choices=("auto", "neural", "heuristic", "learned"), default="auto",
                   help="auto: the neural controller or the heuristic rule, whichever has the lower batch-1 "
                        "latency on VALIDATION among those within --max-drop of dense validation accuracy; "
                        "heuristic: training-free; learned: gates trained jointly with the network "
                        "(straight-through hard gates, eq. 5)")
    p.add_argument("--static-k", type=int, nargs="+", metavar="K",
                   help="static drop-k baselines: the best K blocks removed, chosen on validation "
                        "(default 1..4, at most the number of bypassable blocks)")
    p.add_argument("--gate-epochs", type=int, default=10, help="--policy learned: joint training epochs")
    p.add_argument("--gate-target", type=float, default=0.5,
                   help="--policy learned: the fraction of inputs each gate should run on (eq. 5, target-rate form)")
    p.add_argument("--gate-delta", type=float, default=1.0, help="--policy learned: eq. (5) cost weight delta")
    p.add_argument("--epochs", type=int, default=30, help="base training epochs (cached in OUT/base)")
    p.add_argument("--drop-path", type=float, default=0.2, help="stochastic depth of the residual base model")
    p.add_argument("--branch-drop", type=float, default=0.3, help="branch dropout of a multi-branch base model")
    p.add_argument("--max-drop", type=float, default=0.5, metavar="PT",
                   help="validation accuracy drop allowed when choosing lambda and the policy, in percentage "
                        "points (0.5 = half a point; --tolerance, a fraction, is its deprecated alias)")
    deprecated_alias(p, "--tolerance", "--max-drop", convert=lambda f: 100.0 * f,
                     note="--tolerance 0.005 (a fraction) is --max-drop 0.5 (points)")
    p.add_argument("--latency-n", type=int, default=300, metavar="N",
                   help="timed calls per variant, interleaved (--n is its deprecated alias)")
    deprecated_alias(p, "--n", "--latency-n")
    p.add_argument("--no-shallow", dest="shallow", action="store_false", default=None,
                   help="no shallower-network baselines (default: on for the zoo's CIFAR ResNets when the base's "
                        "training recipe is known; trained with it and cached in OUT/shallow-<name>)")
    p.add_argument("--shallow-blocks", type=int, nargs="+", metavar="N",
                   help="blocks per stage of the shallower baselines (default: the depths whose latency is nearest "
                        "LWAC's operating points, at most 3)")
    p.add_argument("--contention", type=int, default=0, metavar="CORES",
                   help="with --latency-budget-ms: also measure every input's latency while CORES other processes "
                        "spin (one core each, the first on the core this process runs on): the share of inputs "
                        "within +-10 %% of the budget, LWAC and dense")
    p.add_argument("--contention-n", type=int, default=300, metavar="N",
                   help="inputs per arm in the --contention measurement")
    p.add_argument("--contention-placement", choices=PLACEMENTS, default="same",
                   help="where the --contention processes spin: same = the first on this process's core (they "
                        "share it by time slices), other = on the other cores (the load arrives through shared "
                        "caches and memory), os = wherever the scheduler puts them")
    p.add_argument("--budget-controller", choices=CONTROLLERS, default="pi",
                   help="how --latency-budget-ms is held: pi = PI control of lambda (continuous), levels = hold the "
                        "measured depth whose latency, scaled by the current slowdown, is nearest the budget")
    p.add_argument("--quick", action="store_true", help="tiny run for tests: 2 epochs, few timings")


def _policy_line(pc: dict) -> str:
    cands = ", ".join(f"{k} {100 * v['val_accuracy']:.2f} % / {v['val_latency_ms']:.3f} ms"
                      for k, v in pc["candidates"].items())
    return (f"policy: {pc['requested']} -> {pc['used']} (validation only: {cands}; dense val "
            f"{100 * pc['dense_val_accuracy']:.2f} %)")


def run_command(args, progress=None) -> CommandReport:
    opts = LWACOptions(budgets=list(args.latency_budget), budgets_ms=list(args.latency_budget_ms), epochs=args.epochs, drop_path=args.drop_path,
                       branch_drop=args.branch_drop, policy=args.policy, tolerance=args.max_drop / 100.0,
                       n=args.latency_n,
                       quick=args.quick, static_k=args.static_k, gate_epochs=args.gate_epochs,
                       gate_target=args.gate_target, gate_delta=args.gate_delta, shallow=args.shallow,
                       shallow_blocks=args.shallow_blocks, contention=args.contention, contention_n=args.contention_n,
                       contention_placement=args.contention_placement, budget_controller=args.budget_controller)
    out = run_lwac(spec_from_args(args), opts, progress)
    res = out.results
    header = ["variant", "acc %", "95% CI", "drop pt", "ms med", "ms IQR", "x dense", "MACs run", "mJ", "H nats"]
    lines = [f"LWAC on {res.model} / {res.dataset} (batch 1, {res.env['threads']} threads, test n="
             f"{res.variants[0].extra['test_n']})",
             f"base: {res.variants[0].extra['base']['training']}",
             _policy_line(res.variants[1].extra["policy_choice"]),
             text_table(out.table, header, left=1),
             "(* energy estimated: process CPU time x W per core; see energy_j.source; 95% CI: Wilson "
             "interval of the test accuracy)",
             "paired on the same test images (bootstrap 95 % CI of the difference, exact McNemar):",
             *(f"  {c['verdict']}" for c in res.comparisons),
             "", *out.checks, "",
             "budget demo (simulated monitor): " + "; ".join(
                 f"budget {s['budget']:g}{' +contention' if s['contention'] > 1 else ''}: "
                 f"{s['ratio_to_dense']:.2f}x dense" for s in res.variants[0].extra["budget_demo"]),
             "figures: " + ", ".join(res.figures),
             f"wrote {out.results_path}"]
    return CommandReport("\n".join(lines))
