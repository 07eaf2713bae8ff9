"""``layerwise compress``: AdaLayerNet against dense and its rivals, side by side in one run.

Variants (names as written in results.json): ``dense`` (the trained fp32 model); at AdaLayerNet's
packed size, each fine-tuned with the same recipe and packed in the same format
(:mod:`layerwise.adalayer.rivals`, :mod:`layerwise.adalayer.hawq`): ``uniform`` (one pruning ratio
and one bit width for all layers), ``uniform-fl8`` (the same with the first and the output layers
unpruned at 8 bits), ``magnitude`` (global magnitude pruning plus uniform bits), ``hawq-ilp``
(HAWQ-V3-style integer program over per-layer (ratio, bits), Hessian-trace sensitivity);
``int8-static`` (what a PyTorch user runs: static post-training int8 of the convolutions and
linears, per-channel weights, calibrated on the validation split, FBGEMM int8 kernels; see
:mod:`layerwise.adalayer.int8`) and ``adalayer``. Accuracy is on the test split of each model
rebuilt FROM ITS SAVED FILE (the packed ``.lwpk`` files, ``int8-static.pt``); size_bytes is that
file. Every accuracy comes with its per-image test hits and Wilson interval, and adalayer is
compared, paired on the same test images, with every other variant (``comparisons``;
:func:`layerwise.evidence.with_statistics`). A rival that cannot be built for a model (e.g. no
double back-propagation through its layers for the Hessian) is recorded with a null accuracy and
the reason, never a made-up number.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..adalayer import AdaLayerConfig, Architecture, compress_model, export_and_check, load_packed, write_packed
from ..adalayer.budget import check_budget
from ..adalayer.hawq import hawq_ilp
from ..adalayer.intexec import activation_peak_bytes, integer_model
from ..adalayer.int8 import StaticInt8, load_static_state, quantized_params, rebuild_static, static_int8
from ..adalayer.pipeline import analyse, compress_plan, plan_size_fn
from ..adalayer.rivals import FamilyChoice, fit_family
from ..adalayer.targets import find_targets
from ..adalayer.uniform import UniformCandidate
from ..errors import LayerwiseError
from ..evidence import with_statistics
from ..measure import artifact_size, compare_latency, count_macs, measure_energy, peak_memory
from ..results import Results, Variant, env_info, write_results
from ..train import evaluate, predict, TrainConfig
from ..viz.adalayer import architecture_ribbon, layer_fingerprint, params_before_after
from .common import (CommandReport, RunSpec, add_common_arguments, build_for_data, check_device, deprecated_alias,
                     example_input, fmt_count, load_data_for_model, out_dir, set_threads, spec_from_args, text_table, train_cached)

log = logging.getLogger(__name__)

PACKED_RIVALS = ("uniform", "uniform-fl8", "magnitude", "hawq-ilp")
VARIANTS = ("dense", *PACKED_RIVALS, "int8-static", "adalayer", "adalayer-int8")
#: paired comparisons written to results.json (method variant, rival)
COMPARISONS = tuple(("adalayer", r) for r in VARIANTS if r != "adalayer")


@dataclass
class CompressOptions:
    budget: float = 0.15
    base_epochs: int = 20
    base_batch_size: int = 64
    uniform_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    uniform_top: int = 0  # 0: every competing candidate fine-tuned, best val accuracy after fine-tune wins
    uniform_band: float = 0.01  # uniform candidates within this fraction of the largest fitting size compete
    latency_n: int = 200
    latency_batch: int = 32
    int8_calibration: int = 256  # validation samples that calibrate int8-static's activation ranges
    cache_dir: Path | None = None
    quick: bool = False  # --quick: a smoke run, marked so in results.json


@dataclass
class CompressOutput:
    out_dir: Path
    results_path: Path
    results: Results
    table: list[dict]
    checks: dict


def _base_model(spec: RunSpec, data, opts: CompressOptions, directory: Path, progress) -> tuple[nn.Module, str]:
    """The trained fp32 model: --checkpoint, or trained here once and cached in DIR/base/."""
    model = build_for_data(spec, data)
    if spec.checkpoint is not None:
        return model, f"--checkpoint {spec.checkpoint}"
    base_dir = directory / "base"
    ck = base_dir / "checkpoint.pt"
    config = TrainConfig(epochs=opts.base_epochs, batch_size=opts.base_batch_size, optimizer="adam", lr=3e-3,
                         schedule="cosine", seed=spec.seed, device=spec.device, augment=spec.augment)
    if train_cached(model, data, config, base_dir, progress) is None:
        return model, f"cached {ck}"
    return model, f"trained here: {asdict(config)} -> {ck}"


def _nonzero_params(model: nn.Module) -> int:
    return int(sum(int(torch.count_nonzero(p)) for p in model.parameters()))


def _executed_macs(model: nn.Module, macs_per_module: dict[str, int], total: int) -> int:
    """MACs with nonzero weights: each compressible layer's MACs scaled by its weight density."""
    removed = 0
    for name, mod in find_targets(model)[0]:
        w = mod.weight.detach()
        removed += macs_per_module.get(name, 0) * (1.0 - float(torch.count_nonzero(w)) / w.numel())
    return int(round(total - removed))


def _int8_static(base: nn.Module, data, x1: torch.Tensor, xb: torch.Tensor, opts: CompressOptions, device: str,
                 path: Path, bits: dict[str, int] | None = None) -> tuple[StaticInt8, nn.Module | None, dict]:
    """int8-static of the dense model, saved to ``path`` and rebuilt from that file (the model
    measured). (outcome, rebuilt model or None, extra); a model that cannot be quantized gives
    None with the reason in the outcome, never an exception."""
    if torch.device(device).type != "cpu":
        path.unlink(missing_ok=True)
        return StaticInt8(None, reason=f"PyTorch's x86 int8 kernels run on the CPU only; this run measures on "
                                       f"{device}"), None, {}
    if bits is None:
        res = static_int8(base, data.val, x1, samples=opts.int8_calibration)
    else:  # the compressed model with its exact packed codes as int8 weights
        res = integer_model(base, bits, data.val, x1, samples=opts.int8_calibration)
    if res.model is None:
        path.unlink(missing_ok=True)  # no stale file from an earlier run beside these results
        return res, None, {}
    artifact_size(res.model, path=path)
    rebuilt = rebuild_static(base, x1, load_static_state(path))
    with torch.no_grad():
        equal = bool(torch.equal(rebuilt(xb.cpu()), res.model(xb.cpu())))
    return res, rebuilt, {"rebuilt_equals_quantized": equal, "artifact_path": str(path)}


def _test_hits(model: nn.Module, data, device: str) -> tuple[float, torch.Tensor]:
    """(accuracy, per-image hits) on the test split from ONE pass: the accuracy is the hits' mean."""
    pred = predict(model, data.test, device=device)
    hits = (pred.predicted == pred.targets).cpu()
    return int(hits.sum()) / hits.numel(), hits


@dataclass
class UniformChoice:
    chosen: UniformCandidate
    candidates: list[UniformCandidate]
    model: nn.Module
    packed: bytes


def fit_uniform(base: nn.Module, data, arch: Architecture, cfg: AdaLayerConfig, opts: CompressOptions, *,
                target_bytes: int, device: str = "cpu", progress=None, example_input=None) -> UniformChoice:
    """The ``uniform`` baseline at (as close as possible to) ``target_bytes``: per bit width the least
    common ratio that fits; only candidates within ``opts.uniform_band`` of the largest fitting size
    compete (same packed size); they are ranked by validation accuracy AFTER the same fine-tune
    (:func:`layerwise.adalayer.rivals.fit_family`). Test data is never looked at."""
    x1 = example_input if example_input is not None else data.val[0][0].unsqueeze(0)
    fc = fit_family("uniform", base, data, arch, cfg, target_bytes=target_bytes, example_input=x1,
                    bits_options=list(opts.uniform_bits), band=opts.uniform_band, top=opts.uniform_top,
                    device=device, progress=progress)
    return UniformChoice(fc.chosen, fc.candidates, fc.model, fc.packed)


@dataclass
class PackedRival:
    name: str
    model: nn.Module | None  # rebuilt from its packed file; None when the rival could not be built
    path: Path | None
    extra: dict


def _packed_rival(name: str, base: nn.Module, data, arch: Architecture, cfg: AdaLayerConfig, opts: CompressOptions,
                  *, target_bytes: int, x1: torch.Tensor, directory: Path, device: str, progress) -> PackedRival:
    """One packed rival at ``target_bytes``: fitted, fine-tuned (same recipe), packed, rebuilt from its file."""
    path = directory / f"{name}.lwpk"
    try:
        if name == "hawq-ilp":
            targets, _ = find_targets(base)
            choice = hawq_ilp(base, targets, data.val, plan_size_fn(base, arch, cfg), target_bytes, b_min=cfg.b_min,
                              b_max=cfg.b_max, p_max=cfg.p_max, samples=cfg.hessian_samples,
                              batches=cfg.hessian_batches, device=device, seed=cfg.seed)
            m, _, packed = compress_plan(copy.deepcopy(base), data, arch, prune_ratio=choice.prune_ratio,
                                         bits=choice.bits, config=cfg, device=device, progress=progress)
            extra = {"hawq": choice.to_json(), "val_accuracy_finetuned": evaluate(m, data.val, device=device).accuracy,
                     "ranking": "scipy.optimize.milp minimum of sum Tr(H_l)/n_l ||Q(W_l)-W_l||^2 under the packed size"}
        else:
            fc: FamilyChoice = fit_family(name, base, data, arch, cfg, target_bytes=target_bytes, example_input=x1,
                                          bits_options=list(opts.uniform_bits), band=opts.uniform_band,
                                          top=opts.uniform_top, device=device, progress=progress)
            packed, extra = fc.packed, {**fc.to_json(), "prune_ratio": fc.chosen.prune_ratio, "bits": fc.chosen.bits,
                                        "same_size_band": opts.uniform_band}
    except (LayerwiseError, RuntimeError) as exc:  # e.g. no double backward through an LSTM for the Hessian
        path.unlink(missing_ok=True)
        return PackedRival(name, None, None, {"reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
    write_packed(path, packed)
    extra.update(packed_path=str(path), fine_tune="same recipe as adalayer, cross-entropy only")
    return PackedRival(name, load_packed(path).model, path, extra)


def run_compress(spec: RunSpec, cfg: AdaLayerConfig, opts: CompressOptions, progress=None) -> CompressOutput:
    check_device(spec.device)
    check_budget(opts.budget)
    cfg.validate()
    threads = set_threads(spec.threads)
    data = load_data_for_model(spec)
    directory = out_dir(spec, "compress")
    base, base_source = _base_model(spec, data, opts, directory, progress)
    base.eval()
    arch = Architecture(spec.model, tuple(data.input_shape), data.num_classes, {})
    x1 = example_input(data, 1, spec.device)
    dense_size = artifact_size(base, path=directory / "dense.pt")
    cache_dir = opts.cache_dir or directory / "cache"

    # -- adalayer ------------------------------------------------------------------------------
    analysis = analyse(base, data, x1, cfg, device=spec.device, cache_dir=cache_dir, progress=progress)
    ada = compress_model(copy.deepcopy(base), data, arch, budget=opts.budget, example_input=x1, config=cfg,
                         device=spec.device, cache_dir=cache_dir, progress=progress, analysis=analysis)
    ada_path = write_packed(directory / "adalayer.lwpk", ada.packed)
    ada_rebuilt = load_packed(ada_path).model
    xb = torch.stack([data.test[i][0] for i in range(min(64, len(data.test)))]).to(spec.device)
    with torch.no_grad():
        equal = bool(torch.equal(ada_rebuilt(xb), ada.model(xb)))
    onnx = export_and_check(ada_rebuilt, xb[:8], directory / "adalayer.onnx")

    # -- rivals at the same packed size, same fine-tune --------------------------------------------
    rivals = {name: _packed_rival(name, base, data, arch, cfg, opts, target_bytes=len(ada.packed), x1=x1,
                                  directory=directory, device=spec.device, progress=progress)
              for name in PACKED_RIVALS}

    # -- int8-static: static post-training int8 of the dense model, x86 qconfig, FBGEMM kernels -----
    int8_path = directory / "int8-static.pt"
    int8_res, int8, int8_extra = _int8_static(base, data, x1, xb, opts, spec.device, int8_path)

    # -- adalayer-int8: the packed model executed with integer weights and activations -------------
    int_path = directory / "adalayer-int8.pt"
    int_res, int_model, int_extra = _int8_static(ada_rebuilt, data, x1, xb, opts, spec.device, int_path,
                                                 bits=ada.allocation.bits)

    # -- measurements, side by side ---------------------------------------------------------------
    models = {"dense": base, **{k: r.model for k, r in rivals.items()}, "int8-static": int8, "adalayer": ada_rebuilt,
              "adalayer-int8": int_model}
    static = {"int8-static": (int8_res, int8_extra, int8_path), "adalayer-int8": (int_res, int_extra, int_path)}
    measured = {k: m for k, m in models.items() if m is not None}
    lat1 = compare_latency({k: (m, x1) for k, m in measured.items()}, n=opts.latency_n, warmup=20, threads=threads)
    xB = x1.repeat(opts.latency_batch, *([1] * (x1.dim() - 1)))
    latB = compare_latency({k: (m, xB) for k, m in measured.items()}, n=max(10, opts.latency_n // 10), warmup=5,
                           threads=threads)
    dense_macs = count_macs(base, x1)
    variants, table, hits = [], [p.to_json() for p in ada.plans], {}
    for name, m in models.items():
        if m is None:  # a rival that could not be built: recorded, never a made-up number
            if name in static:
                why = f"not measured: the model could not be quantized statically: {static[name][0].reason}"
                extra = {"accuracy_split": "test", **static[name][0].to_json(), "reason": why}
            else:
                why = f"not measured: {name} could not be built for this model: {rivals[name].extra['reason']}"
                extra = {"accuracy_split": "test", "reason": why}
            extra.update({k: why for k in ("accuracy", "macs", "macs_executed", "params", "size_bytes",
                                           "peak_mem_bytes", "latency_ms", "energy_j")})
            variants.append(Variant(name=name, extra=extra))
            continue

        def forward(m=m):
            with torch.inference_mode():
                m(x1)
        acc, hits[name] = _test_hits(m, data, spec.device)
        energy = measure_energy(forward, n=20, device=spec.device)
        mem = peak_memory(forward, device=spec.device)
        act_bytes, act_layer = activation_peak_bytes(m, x1 if name not in static else x1.cpu())
        extra: dict = {"accuracy_split": "test", "latency_batched_ms": latB[name].to_json(),
                       "memory_scope": mem.scope, "macs_source": dense_macs.source,
                       "activation_peak_bytes": act_bytes, "activation_peak_layer": act_layer,
                       "activation_peak_source": "largest input + output bytes of one leaf module at batch 1 "
                                                 "(fp32: 4 B, quint8: 1 B per value): a tensor-size estimate"}
        macs, executed, params = dense_macs.total, dense_macs.total, _nonzero_params(m)
        if name == "dense":
            size = dense_size.bytes
            extra.update(size_source="torch.save(state_dict), fp32", checkpoint=base_source)
        elif name == "adalayer-int8":
            size = int_path.stat().st_size
            params = quantized_params(m)
            extra.update(int_res.to_json(), **int_extra)
            extra.update(runtime_of=str(ada_path), size_source="torch.save(state_dict) of the converted FX model: a "
                         "runtime form of adalayer.lwpk (8-bit dense codes); the packed file stays the artifact",
                         note="integer weights (the packed codes, exactly) and uint8 activations calibrated on val, "
                              f"{int_res.engine} kernels, no fine-tune for the activation rounding")
        elif name == "int8-static":
            size = int8_path.stat().st_size
            params = quantized_params(m)
            extra.update(int8_res.to_json(), **int8_extra)
            extra.update(size_source="torch.save(state_dict) of the converted FX model (int8 weights, per-channel "
                                     "scales/zero points, activation qparams): the file a user ships and loads into "
                                     "the converted graph of the same architecture",
                         macs="from the dense fp32 model: static int8 executes every MAC (in int8 for the "
                              "quantized layers); counters see no quantized ops",
                         params_source="nonzero int8 weights + biases of quantized layers + fp32 parameters left",
                         note="post-training: the dense weights, no pruning and no fine-tune; accuracy, latency and "
                              "size are those of the model rebuilt from the saved file")
        else:
            size = (ada_path if name == "adalayer" else rivals[name].path).stat().st_size
            extra["size_source"] = "os.path.getsize of the packed file (.lwpk)"
            if cfg.structured and name == "adalayer":
                mc = count_macs(m, x1)
                macs = executed = mc.total
                extra["macs_executed_note"] = "structured: channels removed, these MACs really run"
            else:
                executed = _executed_macs(m, dense_macs.per_module, dense_macs.total)
                extra["macs_executed_note"] = ("nonzero-weight MACs (what a sparse kernel would run); the rebuilt "
                                               "model runs dense PyTorch kernels, so its latency equals dense")
        if name in rivals:
            extra.update(rivals[name].extra)
        if name == "adalayer":
            extra.update(layers=table, skipped=[s.to_json() for s in ada.skipped], budget=ada.budget.to_json(),
                         allocation=ada.allocation.to_json(), sensitivity=ada.sensitivity.to_json(),
                         sensitivity_cached=ada.sensitivity.cached, config=cfg.to_json(),
                         packed_path=str(ada_path), rebuilt_equals_fake_quant=equal, onnx=onnx.to_json(),
                         val_accuracy_before_finetune=ada.val_accuracy_before_finetune, eq5=ada.regulariser,
                         structured_channels={k: list(v) for k, v in ada.structured_channels.items()},
                         mode="structured" if cfg.structured else "unstructured")
        variants.append(Variant(name=name, accuracy=acc, macs=macs, macs_executed=min(executed, macs),
                                params=params, size_bytes=int(size), latency_ms=lat1[name].to_json(),
                                peak_mem_bytes=mem.bytes, energy_j=energy.to_json(), extra=extra))
    compare = [p for p in COMPARISONS if all(x in hits for x in p)]
    figures = [layer_fingerprint(table, directory / "layer_fingerprint.png").name,
               architecture_ribbon(table, directory / "architecture_ribbon.png", b_min=cfg.b_min,
                                   b_max=cfg.b_max).name,
               params_before_after(table, directory / "params_per_layer.png").name]
    results = Results(method="adalayer", model=spec.model, dataset=data.label,
                      env=env_info(spec.device, threads, spec.seed), variants=variants, figures=figures,
                      quick=opts.quick)
    results = with_statistics(results, hits, compare=compare)
    path = write_results(directory, results)
    checks = {"rebuilt_equals_fake_quant": equal, "equality_inputs": int(xb.shape[0]), "onnx": onnx.to_json(),
              "latency_ratio_b1": lat1["adalayer"].median_ms / lat1["dense"].median_ms,
              "latency_ratio_b1_adalayer_int8": (lat1["adalayer-int8"].median_ms / lat1["dense"].median_ms
                                                 if "adalayer-int8" in lat1 else None),
              "latency_ratio_b1_int8": (lat1["int8-static"].median_ms / lat1["dense"].median_ms
                                        if "int8-static" in lat1 else None),
              "latency_iqr_ms": {k: v.iqr_ms for k, v in lat1.items()}}
    return CompressOutput(directory, path, results, table, checks)


NAME = "compress"
HELP = "AdaLayerNet: per-layer pruning ratio and bit width under a size budget, packed artifact"


def add_arguments(p) -> None:
    add_common_arguments(p, training=True)
    p.add_argument("--budget", type=float, default=0.15, help="packed size as a fraction of the dense fp32 file")
    p.add_argument("--structured", action="store_true", help="remove whole channels with Torch-Pruning")
    p.add_argument("--allocation", choices=("eq23", "ilp"), default="eq23",
                   help="eq. 6: the paper's eq. 2-3 scaled to the budget (default) or an integer program over "
                        "per-layer (ratio, bits) minimising the probe-predicted damage")
    p.add_argument("--importance", choices=("accuracy", "hessian"), default="accuracy",
                   help="A_l from measured accuracy drops (paper) or Hutchinson Hessian traces (HAWQ-style)")
    p.add_argument("--probe-ratio", type=float, default=0.8, help="eq. 1 probe: prune this fraction of one layer")
    p.add_argument("--probe-bits", type=int, default=2, help="eq. 1 probe: quantize that layer to these bits")
    p.add_argument("--probe-metric", choices=("loss", "accuracy"), default="loss",
                   help="A_l from the val loss increase (default) or the val accuracy drop at the probe")
    p.add_argument("--normalisation", choices=("log", "max"), default="log",
                   help="A_l = log1p(s/median)/log1p(max/median) (default) or s/max")
    p.add_argument("--epochs", type=int, default=20,
                   help="epochs to train the dense base model, without --checkpoint (--base-epochs is its "
                        "deprecated alias)")
    deprecated_alias(p, "--base-epochs", "--epochs")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--b-min", type=int, default=2, help="fewest bits of any layer (adalayer and hawq-ilp)")
    p.add_argument("--b-max", type=int, default=8)
    p.add_argument("--p-max", type=float, default=0.95)
    p.add_argument("--alpha", type=float, default=1.0, help="eq. 1 weight of the accuracy contribution")
    p.add_argument("--beta", type=float, default=-1.0, help="eq. 1 weight of the MAC share (negative: costly "
                                                            "layers are compressed harder)")
    p.add_argument("--gamma", type=float, default=1.0, help="eq. 2 weight of (1 - I_l) in the pruning ratio")
    p.add_argument("--delta", type=float, default=0.3, help="eq. 2 weight of the redundancy R_l")
    p.add_argument("--lam", type=float, default=4.0, help="eq. 3 lambda: bits taken away per unit of (1 - I_l)")
    p.add_argument("--eta", type=float, default=1e-5, help="eq. 5 sparsity weight, used as given with --eta-share 0")
    p.add_argument("--eta-share", type=float, default=0.1, help="eq. 5: eta calibrated so the term is this share "
                                                                "of the fine-tune loss at its start (0: use --eta)")
    p.add_argument("--hessian-samples", type=int, default=8, help="Hutchinson vectors (hessian importance, hawq-ilp)")
    p.add_argument("--uniform-top", type=int, default=0, help="rival candidates to fine-tune (0: every candidate "
                                                              "within the same-size band; ranked after fine-tune)")
    p.add_argument("--latency-n", type=int, default=200, metavar="N", help="timed batch-1 calls per variant")
    p.add_argument("--cache-dir", type=Path, help="sensitivity cache (default DIR/cache)")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (2 base epochs, 1 "
                                                        "fine-tune epoch, few latency runs)")


def run_command(args, progress=None) -> CommandReport:
    cfg = AdaLayerConfig(alpha=args.alpha, beta=args.beta, importance=args.importance, p_max=args.p_max,
                         probe_ratio=args.probe_ratio, probe_bits=args.probe_bits, probe_metric=args.probe_metric,
                         normalisation=args.normalisation, gamma=args.gamma, delta=args.delta, lam=args.lam,
                         hessian_samples=args.hessian_samples,
                         b_min=args.b_min, b_max=args.b_max, eta=args.eta, eta_share=args.eta_share,
                         finetune_epochs=args.finetune_epochs,
                         structured=args.structured, allocation=args.allocation, seed=args.seed)
    opts = CompressOptions(budget=args.budget, base_epochs=args.epochs, uniform_top=args.uniform_top,
                           latency_n=args.latency_n, cache_dir=args.cache_dir)
    if args.quick:
        cfg.finetune_epochs, opts.base_epochs, opts.latency_n, opts.uniform_top = \
            min(cfg.finetune_epochs, 1), min(opts.base_epochs, 2), min(opts.latency_n, 20), 1
        opts.quick = True
        opts.uniform_bits = (4, 8)
    out = run_compress(spec_from_args(args), cfg, opts, progress)
    return CommandReport(format_report(out, cfg, opts))


def _ci_text(x) -> str:
    ci = x.accuracy_ci
    return f"{100 * ci['low']:.1f}-{100 * ci['high']:.1f}" if ci else "-"


def _rival_text(x) -> str:
    e = x.extra
    if x.accuracy is None:
        return e["reason"]
    if "hawq" in e:
        bits = list(e["hawq"]["layer_bits"].values())
        ratios = list(e["hawq"]["layer_prune_ratio"].values())
        return (f"integer program: bits {min(bits)}-{max(bits)}, "
                f"prune {100 * min(ratios):.0f}-{100 * max(ratios):.0f} % "
                f"per layer, {e['hawq']['solves']} solve(s)")
    what = {"uniform": "in every layer", "uniform-fl8": "in every layer but the first and output (8 bits, unpruned)",
            "magnitude": "global magnitude pruning (one |w| threshold), uniform bits"}[e["family"]]
    return f"{e['bits']} bits, knob {100 * e['prune_ratio']:.1f} % {what}; chosen after fine-tune of " \
           f"{sum(c['val_accuracy_finetuned'] is not None for c in e['candidates'])} candidate(s)"


def format_report(out: CompressOutput, cfg: AdaLayerConfig, opts: CompressOptions) -> str:
    res = out.results
    v = {x.name: x for x in res.variants}
    dense = v["dense"]
    rows = []
    for x in res.variants:
        if x.accuracy is None:  # not measured (int8-static on a model it cannot quantize)
            rows.append([x.name, "n/a", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"])
            continue
        lat = x.latency_ms
        rows.append([x.name, f"{100 * x.accuracy:.2f}", _ci_text(x), f"{100 * (x.accuracy - dense.accuracy):+.2f}",
                     f"{x.size_bytes:,}", f"{x.size_bytes / dense.size_bytes:.4f}", fmt_count(x.params),
                     fmt_count(x.macs), fmt_count(x.macs_executed),
                     f"{lat['median']:.3f} ± {lat['iqr']:.3f}", f"{lat['median'] / dense.latency_ms['median']:.3f}",
                     f"{x.energy_j['value'] * 1e3:.3f}{'*' if x.energy_j['estimated'] else ''}"])
    layer_rows = [[r["name"], fmt_count(r["params"]), fmt_count(r["params_after"]), f"{100 * r['prune_ratio']:.1f}",
                   r["bits"], f"{r['accuracy_contribution']:.3f}", f"{r['importance']:.3f}"] for r in out.table]
    ada = v["adalayer"].extra
    i8 = v["int8-static"]
    lines = [
        f"AdaLayerNet on {res.model} / {res.dataset}: budget {opts.budget:g} of the dense fp32 file, "
        f"{ada['mode']}, importance={cfg.importance} (probe {100 * cfg.probe_ratio:.0f} % / {cfg.probe_bits} bits, "
        f"{cfg.probe_metric}, {cfg.normalisation}-normalised), {res.env['threads']} threads",
        "",
        "Per-layer plan (paper Fig. 6):",
        text_table(layer_rows, ["layer", "params", "after", "prune %", "bits", "acc contrib A", "importance I"],
                   left=1),
        "",
        text_table(rows, ["variant", "acc %", "95 % CI", "Δ pt", "size B", "size/dense", "params≠0", "MACs",
                          "MACs exec", "latency b=1 ms (median ± IQR)", "lat/dense", "energy mJ"], left=1),
        "(test accuracy with its Wilson 95 % interval; * estimated energy, see results.json energy_j.source; "
        "latency interleaved in one run)",
        "",
        "Paired on the same test images (bootstrap 95 % CI, exact McNemar):",
        *(f"  {c['verdict']}" for c in res.comparisons),
        *(f"  adalayer vs {x.name}: not compared ({x.name} has no test hits)" for x in res.variants
          if x.accuracy is None),
        "",
        f"packed file        {ada['packed_path']}  ({v['adalayer'].size_bytes:,} bytes = "
        f"{v['adalayer'].size_bytes / dense.size_bytes:.4f} of dense; smallest feasible budget "
        f"{ada['budget']['smallest_feasible_budget']:.4f})",
        f"rebuilt == fake-quant (torch.equal on {out.checks['equality_inputs']} test inputs): {out.checks['rebuilt_equals_fake_quant']}",
        f"ONNX vs onnxruntime max |diff| {out.checks['onnx']['max_abs_diff']:.2e} (tolerance "
        f"{out.checks['onnx']['tolerance']:g}): {'ok' if out.checks['onnx']['ok'] else 'MISMATCH'}",
    ]
    for name in PACKED_RIVALS:
        lines.append(f"{name:<18} {_rival_text(v[name])}")
    if i8.accuracy is None:
        lines.append(f"int8-static        {i8.extra['reason']}")
    else:
        ops = i8.extra["executed"]
        lines.append(f"int8-static        {i8.extra['flow']} static PTQ, {i8.extra['backend']} qconfig, "
                     f"{i8.extra.get('engine', i8.extra['backend'])} kernels, calibrated on "
                     f"{i8.extra['calibration_samples']} val samples; {sum(ops['quantized_modules'].values())} "
                     f"quantized layers, rebuilt from {i8.extra['artifact_path']} == quantized: "
                     f"{i8.extra['rebuilt_equals_quantized']}"
                     + (f"; left fp32: {', '.join(ops['float_layers'])}" if ops["float_layers"] else ""))
    ai = v["adalayer-int8"]
    if ai.accuracy is None:
        lines.append(f"adalayer-int8      {ai.extra['reason']}")
    else:
        a, lat, dl = v["adalayer"], ai.latency_ms, dense.latency_ms
        cpu = (f"; thread CPU {lat['thread_cpu']['median']:.3f} ms vs fp32 {dl['thread_cpu']['median']:.3f} ms"
               if "thread_cpu" in lat and "thread_cpu" in dl else "")
        lines.append(f"adalayer-int8      integer execution of the packed model (int8 weights = its codes in "
                     f"{ai.extra['executed'].get('exact_packed_codes_layers', 0)} layers, uint8 activations): "
                     f"acc {100 * ai.accuracy:.2f} % vs packed {100 * a.accuracy:.2f} %; batch-1 latency "
                     f"{lat['median']:.3f} ± {lat['iqr']:.3f} ms = {lat['median'] / dl['median']:.2f}x fp32 dense "
                     f"(interleaved){cpu}; activation peak {ai.extra['activation_peak_bytes']:,} B vs packed "
                     f"(fp32) {a.extra['activation_peak_bytes']:,} B")
    if ada.get("eq5"):
        e5 = ada["eq5"]
        lines.append(f"eq. 5 term         eta {e5['eta']:.3g}: {100 * e5['share_first']:.1f} % of the fine-tune "
                     f"loss at the start, {100 * e5['share_mean']:.1f} % on average, {100 * e5['share_last']:.1f} % at the end")
    if ada["skipped"]:
        lines.append("left uncompressed: " + "; ".join(f"{s['name']} ({s['kind']})" for s in ada["skipped"]))
    lines.append(f"figures            {', '.join(res.figures)}")
    lines.append(f"wrote {out.results_path}")
    return "\n".join(lines)
