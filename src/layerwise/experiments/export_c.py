"""``layerwise export-c``: a UnIT-calibrated network as self-contained C99, checked and measured.

1. The base model: ``--checkpoint``, or trained as ``layerwise unit`` trains it (cached as
   ``OUT/base_model.pt``).
2. UnIT thresholds as ``layerwise unit`` calibrates them (:func:`layerwise.unit.calibrate` on the
   validation split; the percentile is ``--percentile`` or, by default, the largest sweep
   percentile whose VALIDATION accuracy with the float UnIT model (exact division) stays within
   ``--max-drop`` of the dense model's, :func:`layerwise.unit.select.choose_percentile`).
3. int16 fixed point with per-layer formats from the validation ranges
   (:mod:`layerwise.export.fixed`) and ``OUT/NAME.c`` + ``OUT/NAME.h`` (:mod:`layerwise.export.c_codegen`).
4. Host check: every build (dense, dense skipping zeros, UnIT with each division) compiled with the
   system C compiler and run on the whole test split; its logits must equal the Python int16
   reference's bit for bit (the command fails otherwise); test accuracy of each beside float's.
5. MSP430 (unless ``--no-mcu``; skipped, saying so, without clang / ld.lld / mspdebug): every build
   x {software multiply, hardware multiplier} run once, on the first test input, in ``mspdebug
   sim``; cycles per layer and in total (``extra.mcu_cycles``, source ``mspdebug-sim``) with the
   cycle model's prediction beside them; energy = cycles x the datasheet active power (an estimate).
"""

from __future__ import annotations

import copy
import logging
import time

import torch

from ..data import make_loader
from ..errors import LayerwiseError
from ..evidence import with_statistics
from ..export import c_codegen, cycles, host, msp430
from ..export.figure import cycles_by_layer
from ..export.fixed import DIVISIONS, quantize_model, run_fixed
from ..measure import count_params
from ..results import Results, Variant, env_info, write_results
from ..train import evaluate
from ..unit import calibrate, convert, sweep, unit_layers
from ..unit.mcu import PROFILES
from ..unit.select import choose_percentile, parse_percentile
from .common import (CommandReport, add_common_arguments, percentile_list, check_device, load_data_for_model,
                     out_dir, set_threads, spec_from_args, text_table)
from .unit_run import DEFAULT_SWEEP, UnitRunConfig, _base_model

log = logging.getLogger(__name__)

NAME = "export-c"
HELP = "export a UnIT-calibrated network to C (int16), check it on the host, count MSP430 cycles"

BUILDS = (("dense", None), ("zero_skip", None)) + tuple(("unit", d) for d in DIVISIONS)


def _tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(xs), torch.as_tensor(ys)


def _thresholds(base, data, args, device: str) -> tuple[dict, dict]:
    """UnIT thresholds per layer name and how the percentile was chosen."""
    model = convert(copy.deepcopy(base), groups=args.groups).model
    val_loader = make_loader(data.val, batch_size=256)
    pct = parse_percentile(args.percentile)
    info: dict = {"groups": args.groups}
    if pct is None:
        dense_val = evaluate(base, data.val, device=device).accuracy
        pts = sweep(model, val_loader, lambda m: evaluate(m, data.val, device=device).accuracy,
                    sorted(set(args.sweep)))
        choice = choose_percentile([(p.percentile, p.accuracy) for p in pts], dense_val,
                                   args.max_drop / 100.0)
        pct = choice.percentile
        info.update(rule="auto (val)", choice=choice.to_json())
    else:
        info["rule"] = "fixed (--percentile)"
    calibrate(model, val_loader, percentile=pct)
    info["percentile"] = pct
    th = {n: m.unit_threshold.detach().cpu().clone() for n, m in unit_layers(model)}
    info["thresholds"] = {n: t.tolist() for n, t in th.items()}
    return th, info


def run_export(args, progress=None) -> tuple[Results, str]:
    spec = spec_from_args(args)
    check_device(spec.device)
    threads = set_threads(spec.threads)
    t0 = time.perf_counter()
    if not args.name.isidentifier():
        raise LayerwiseError(f"--name {args.name!r} is not a C identifier; use letters, digits and _")
    data = load_data_for_model(spec)
    if len(data.val) < 2:
        raise LayerwiseError(f"{data.name} has {len(data.val)} validation samples; calibration "
                             "needs at least 2: use a dataset with a larger validation split")
    directory = out_dir(spec, "export-c")
    cfg = UnitRunConfig(epochs=args.epochs, batch_size=args.batch_size)
    base, base_info = _base_model(spec, data, cfg, directory)
    base = base.cpu().eval()
    x_val, _ = _tensors(data.val)
    x_test, y_test = _tensors(data.test)
    with torch.no_grad():
        float_pred = torch.cat([base(x_test[i:i + 256]).argmax(1) for i in range(0, len(x_test), 256)])
    float_hits = (float_pred == y_test).numpy()

    th, th_info = _thresholds(base, data, args, "cpu")
    qnet = quantize_model(base, x_val, division=args.division, thresholds=th)
    header, source = c_codegen.emit(qnet, args.name)
    c_file, h_file = directory / f"{args.name}.c", directory / f"{args.name}.h"
    h_file.write_text(header)
    c_file.write_text(source)
    fp = c_codegen.footprint(qnet)

    # host check ---------------------------------------------------------------------------
    xq = qnet.quantize_input(x_test)
    host_rows = {}
    hits = {"float": float_hits}
    for mode, div in BUILDS:
        name = cycles.variant_name(mode, div)
        exe = host.build_host(c_file, h_file, directory / "host", mode=mode,
                              division=None if div is None else DIVISIONS.index(div))
        y_c = host.run_host(exe, xq, qnet.num_classes)
        y_p, works = run_fixed(qnet, xq, mode, div)
        mismatched = int((y_c != y_p).any(1).sum())
        if mismatched:
            raise LayerwiseError(
                f"internal: the host C build {name} and the Python int16 reference disagree on "
                f"{mismatched} of {len(xq)} test inputs; please report this with {directory}")
        pred = y_c.argmax(1)
        hits[name] = pred == y_test.numpy()
        n = len(xq)
        host_rows[name] = {"bit_exact_samples": n, "mismatched_samples": 0,
                           "macs": sum(w.macs for w in works.values()) / n,
                           "macs_executed": sum(w.executed for w in works.values()) / n,
                           "saturated_outputs": sum(w.saturated for w in works.values()),
                           "per_layer_work": {k: w.to_json() for k, w in works.items()}}

    # msp430 -------------------------------------------------------------------------------
    mcu: list[dict] = []
    mcu_note = None
    fig_name = None
    if args.no_mcu:
        mcu_note = "not measured (--no-mcu)"
    else:
        try:
            tools = msp430.find_toolchain()
        except msp430.MissingToolchain as exc:
            tools, mcu_note = None, f"not measured: {exc}"
            log.warning("export-c: %s", mcu_note)
        if tools is not None:
            recs = cycles.measure_variants(qnet, xq[0], directory / "msp430", tools=tools)
            mcu = [r.to_json() for r in recs]
            bad = [f"{r['multiplier']} {r['variant']}" for r in mcu if not r["logits_match"]]
            if bad:
                raise LayerwiseError(f"internal: the MSP430 logits differ from the Python int16 "
                                     f"reference in {', '.join(bad)}; please report this")
            fig_name = "mcu_cycles.png"
            cycles_by_layer(mcu, directory / fig_name,
                            title=f"{spec.model} / {data.label}: one inference on the MSP430 "
                                  f"(mspdebug sim), UnIT p{th_info['percentile']:g}")

    # results ------------------------------------------------------------------------------
    n_params = count_params(base)
    dense_macs = int(round(host_rows["dense"]["macs"]))
    not_timed = "not timed here: see extra.mcu_cycles (cycles of one inference in mspdebug sim)"
    variants = [Variant(name="float", accuracy=float(float_hits.mean()), macs=dense_macs,
                        macs_executed=dense_macs, params=n_params,
                        extra={"note": "the float32 model in PyTorch (reference)",
                               "size_bytes": "float32 PyTorch model: not a deployment artifact",
                               "peak_mem_bytes": "not measured for the float reference",
                               "latency_ms": "not timed: the float reference",
                               "energy_j": "not estimated for the float reference"})]
    for mode, div in BUILDS:
        name = cycles.variant_name(mode, div)
        hr = host_rows[name]
        recs = [r for r in mcu if r["variant"] == name]
        energy = None
        for r in recs:
            p = PROFILES[cycles.PROFILE_OF[r["multiplier"]]]
            r["energy_j_estimate"] = r["cycles"] * p.energy_per_cycle_j
            r["seconds_at_clock"] = r["cycles"] / p.clock_hz
        sw = next((r for r in recs if r["multiplier"] == "swmul"), None)
        if sw is not None:
            energy = {"value": sw["energy_j_estimate"], "estimated": True,
                      "source": "estimate: mspdebug-sim cycles (software multiply) x MSP430FR5994 "
                                "datasheet active power (118 uA/MHz at 3 V, 8 MHz)"}
        variants.append(Variant(
            name=name, accuracy=float(hits[name].mean()), macs=int(round(hr["macs"])),
            macs_executed=int(round(hr["macs_executed"])), params=n_params,
            size_bytes=fp.rom_data, energy_j=energy,
            extra={"build": {"LW_MODE": host.MODE_CODE[mode],
                             "LW_DIV": None if div is None else DIVISIONS.index(div)},
                   "host_check": {k: v for k, v in hr.items() if k != "per_layer_work"},
                   "per_layer_work": hr["per_layer_work"],
                   "mcu_cycles": recs, "mcu_note": mcu_note,
                   "footprint": fp.to_json(), "formats": qnet.calibration["formats"],
                   "peak_mem_bytes": "static RAM of the C build: see extra.footprint.ram",
                   "latency_ms": not_timed,
                   **({} if energy is not None else
                      {"energy_j": f"no MSP430 measurement ({mcu_note})"}),
                   "f_input": qnet.f_input, "unit": th_info, "base_model": base_info}))
    results = Results(method="export-c", model=spec.model, dataset=data.label,
                      env={**env_info("cpu", threads, spec.seed), "c_file": str(c_file),
                           "h_file": str(h_file)},
                      variants=variants, figures=[fig_name] if fig_name else [])
    results = with_statistics(results, hits, compare=[("unit-" + args.division, "dense"),
                                                      ("dense", "float")], seed=spec.seed)
    path = write_results(directory, results)
    return results, _report(spec, data, qnet, fp, hits, host_rows, mcu, mcu_note, th_info, c_file,
                            h_file, path, fig_name, time.perf_counter() - t0, args)


def _report(spec, data, qnet, fp, hits, host_rows, mcu, mcu_note, th_info, c_file, h_file, path,
            fig_name, elapsed, args) -> str:
    lines = [f"export-c {spec.model} / {data.label}: UnIT p{th_info['percentile']:g} "
             f"({th_info['rule']}), {len(qnet.layers)} layers, input Q.{qnet.f_input}, "
             f"formats " + ", ".join(f"{n} Q.{f['f_in']}xQ.{f['f_w']}->Q.{f['f_out']}"
                                     for n, f in qnet.calibration["formats"].items()),
             f"wrote {c_file} and {h_file}: RAM {fp.ram} B (activations {fp.ram_activations}, "
             f"accumulators {fp.ram_accumulator}, input {fp.input_bytes}); ROM data {fp.rom_data} B "
             f"(weights {fp.rom_weights}, UnIT tables {fp.rom_tables})"]
    n = len(hits["float"])
    rows = [["float (PyTorch)", f"{hits['float'].mean():.4f}", "-", "-"]]
    for mode, div in BUILDS:
        name = cycles.variant_name(mode, div)
        hr = host_rows[name]
        rows.append([name, f"{hits[name].mean():.4f}",
                     f"{100 * (hits[name].mean() - hits['float'].mean()):+.2f}",
                     f"{hr['macs_executed']:.0f} / {hr['macs']:.0f}"])
    lines += ["", f"host C build vs Python int16 reference: identical logits on all {n} test inputs "
              "for every build", text_table(rows, ["build", "test acc", "pt vs float", "MACs run / all"],
                                            left=1)]
    if mcu:
        dense = {r["multiplier"]: r["cycles"] for r in mcu if r["variant"] == "dense"}
        mrows = []
        for r in mcu:
            mrows.append([r["multiplier"], r["variant"], f"{r['cycles']:,}",
                          f"{r['cycles'] / dense[r['multiplier']]:.3f}x",
                          f"{r['predicted']:,.0f}", f"{100 * r['prediction_error']:+.1f}%",
                          f"{r['energy_j_estimate'] * 1e3:.2f}", f"{r['sim_seconds']:.1f}"])
        sliced = " (measured slice by slice: too big for 64 KB)" if mcu[0]["sliced"] else ""
        lines += ["", f"MSP430 (mspdebug sim, one inference, first test input{sliced}; model = "
                      "cycle model prediction; mJ = ESTIMATE, cycles x datasheet power):",
                  text_table(mrows, ["mul", "build", "cycles", "vs dense", "model", "model err",
                                     "mJ (est.)", "sim s"], left=2)]
    else:
        lines.append(f"MSP430: {mcu_note}")
    lines.append(f"wrote {path}" + (f" and {fig_name}" if fig_name else "") + f" ({elapsed:.0f} s)")
    return "\n".join(lines)


def add_arguments(p) -> None:
    add_common_arguments(p, training=True)
    p.add_argument("--percentile", type=str, default="auto",
                   help="percentile of |x*w| for the UnIT thresholds, or 'auto' (default): the "
                        "largest sweep percentile whose validation accuracy is within --max-drop")
    p.add_argument("--max-drop", type=float, default=0.5, metavar="PT",
                   help="validation accuracy drop allowed to auto, in percentage points (0.5 = half a point)")
    p.add_argument("--sweep", type=percentile_list, default=DEFAULT_SWEEP, help="percentiles for auto")
    p.add_argument("--groups", type=int, default=1, help="threshold groups per layer")
    p.add_argument("--division", choices=DIVISIONS, default="exact",
                   help="the Linear threshold division the C source compiles with by default")
    p.add_argument("--name", default="lw_net", help="C name: files NAME.c / NAME.h, NAME_infer()")
    p.add_argument("--epochs", type=int, default=None, help="base model epochs (as `layerwise unit`)")
    p.add_argument("--batch-size", type=int, default=None, help="base model batch size")
    p.add_argument("--no-mcu", action="store_true", help="skip the MSP430 measurement")


def run_command(args, progress=None) -> CommandReport:
    if not 0.0 <= args.max_drop < 100.0:
        raise LayerwiseError(f"--max-drop {args.max_drop} must be points in [0, 100), e.g. 0.5")
    if args.groups < 1:
        raise LayerwiseError(f"--groups {args.groups} must be >= 1")
    if any(not 0.0 < v < 100.0 for v in args.sweep) or not args.sweep:
        raise LayerwiseError("--sweep: give percentiles strictly between 0 and 100, e.g. 10,20,40")
    _, text = run_export(args, progress)
    return CommandReport(text)
