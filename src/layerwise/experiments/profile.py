"""``layerwise profile``: params, MACs, size, latency, memory and energy, per layer and in total."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..layers import LayerInfo, list_layers
from ..measure import per_layer_latency, profile_model
from ..measure.activation import activation_memory
from ..results import Results, Variant, env_info, write_results
from ..train import evaluate
from .common import (CommandReport, RunSpec, add_common_arguments, build_for_data, check_device, deprecated_alias,
                     example_input, fmt_count, fmt_shape, load_data_for_model, out_dir, set_threads, spec_from_args, text_table)

log = logging.getLogger(__name__)


@dataclass
class ProfileOutput:
    results_path: Path
    results: Results
    layers: list[LayerInfo]
    layer_latency_ms: dict[str, float]


def run_profile(spec: RunSpec, *, granularity: str = "leaf", n: int = 100, warmup: int = 10,
                batched: int = 32, quick: bool = False) -> ProfileOutput:
    """The per-layer profile; ``quick`` (a smoke run) marks the results so, whatever the timings asked."""
    check_device(spec.device)
    threads = set_threads(spec.threads)
    data = load_data_for_model(spec)
    model = build_for_data(spec, data).eval()
    x = example_input(data, 1, spec.device)

    layers = list_layers(model, x, granularity=granularity)
    layer_lat = per_layer_latency(model, x, leaf_names=[l.name for l in layers], n=max(10, n // 4),
                                  warmup=warmup, threads=threads)
    prof = profile_model(model, x, threads=threads, n=n, warmup=warmup, batched=batched)
    fields = prof.to_variant_fields()
    extra = dict(fields.pop("extra", {}))
    extra["layers"] = [
        {**l.to_json(), "latency_ms": layer_lat[l.name].to_json() if l.name in layer_lat else None}
        for l in layers
    ]
    extra["dataset_info"] = data.info
    extra["activation_memory"] = activation_memory(model, x).to_json()
    extra["memory_note"] = ("peak_mem_bytes is the whole process's resident memory (framework included); "
                            "activation_memory.peak_bytes is the bytes of activations alive at once at batch 1, "
                            "what a microcontroller's SRAM must hold")
    if spec.checkpoint is not None:
        accuracy = evaluate(model, data.test, device=spec.device).accuracy
        extra["accuracy_split"] = "test"
    else:
        accuracy = None
        extra["accuracy"] = "not evaluated: the model is untrained; pass --checkpoint PATH to evaluate it"
    variant = Variant(name="dense", accuracy=accuracy, extra=extra, **fields)
    results = Results(method="profile", model=spec.model, dataset=data.label,
                      env=env_info(spec.device, threads, spec.seed), variants=[variant], quick=quick)
    path = write_results(out_dir(spec, "profile"), results)
    return ProfileOutput(path, results, layers, {k: v.median_ms for k, v in layer_lat.items()})


NAME = "profile"
HELP = "per-layer table: params, MACs, shapes, latency; totals with memory and energy"


def add_arguments(p) -> None:
    add_common_arguments(p)
    p.add_argument("--granularity", choices=("leaf", "block"), default="leaf")
    p.add_argument("--latency-n", type=int, default=100, metavar="N",
                   help="timed runs per latency figure (--n is its deprecated alias)")
    deprecated_alias(p, "--n", "--latency-n")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batched", type=int, default=32, help="batch size of the batched latency case")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 5 timed runs, 1 warm-up, batched case at 4; marked quick")


def run_command(args, progress=None) -> CommandReport:
    if args.quick:
        args.latency_n, args.warmup, args.batched = 5, 1, 4
    out = run_profile(spec_from_args(args), granularity=args.granularity, n=args.latency_n, warmup=args.warmup,
                      batched=args.batched, quick=args.quick)
    res, v = out.results, out.results.variants[0]
    rows = [[l.name, l.kind, fmt_count(l.params), fmt_count(l.macs), fmt_shape(l.input_shape),
             fmt_shape(l.output_shape), f"{out.layer_latency_ms.get(l.name, float('nan')):.3f}"]
            for l in out.layers]
    lat, en, batched = v.latency_ms, v.energy_j, v.extra.get("latency_batched_ms")
    lines = [
        f"{res.model} on {res.dataset}  ({args.granularity} layers, batch 1, {res.env['threads']} threads)",
        text_table(rows, ["layer", "kind", "params", "MACs", "input", "output", "ms (hooks)"]),
        "",
        f"params        {v.params:,}",
        f"MACs          {v.macs:,}  ({v.extra.get('macs_source', 'FlopCounterMode')})",
        f"size          {v.size_bytes:,} bytes (saved state_dict)",
        f"latency b=1   median {lat['median']:.3f} ms, IQR {lat['iqr']:.3f} ms, n={lat['n']}",
    ]
    if batched:
        lines.append(f"latency b={batched['batch']}  median {batched['median']:.3f} ms, "
                     f"IQR {batched['iqr']:.3f} ms, n={batched['n']}")
    lines += [
        f"peak activations {v.extra['activation_memory']['peak_bytes']:,} bytes at batch 1, at "
        f"{v.extra['activation_memory']['peak_at']} ({v.extra['activation_memory']['source']})",
        f"process memory   {v.peak_mem_bytes / 2**20:.1f} MiB peak resident ({v.extra.get('memory_source', 'process')}; "
        "framework included)",
        f"energy        {en['value']:.3g} J per inference "
        f"({'estimated, ' if en['estimated'] else ''}{en['source']})",
    ]
    if v.accuracy is not None:
        lines.append(f"accuracy      {v.accuracy:.4f} (test split)")
    lines.append(f"\nwrote {out.results_path}")
    return CommandReport("\n".join(lines))
