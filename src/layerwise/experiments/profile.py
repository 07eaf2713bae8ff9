"""``layerwise profile``: params, MACs, size, latency, memory and energy, per layer and in total."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..layers import LayerInfo, list_layers
from ..measure import per_layer_latency, profile_model
from ..results import Results, Variant, env_info, write_results
from ..train import evaluate
from .common import RunSpec, build_for_data, check_device, example_input, load_data_for_model, out_dir, set_threads

log = logging.getLogger(__name__)


@dataclass
class ProfileOutput:
    results_path: Path
    results: Results
    layers: list[LayerInfo]
    layer_latency_ms: dict[str, float]


def run_profile(spec: RunSpec, *, granularity: str = "leaf", n: int = 100, warmup: int = 10,
                batched: int = 32) -> ProfileOutput:
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
    if spec.checkpoint is not None:
        accuracy = evaluate(model, data.test, device=spec.device).accuracy
        extra["accuracy_split"] = "test"
    else:
        accuracy = None
        extra["accuracy"] = "not evaluated: the model is untrained; pass --checkpoint PATH to evaluate it"
    variant = Variant(name="dense", accuracy=accuracy, extra=extra, **fields)
    results = Results(method="profile", model=spec.model, dataset=data.label,
                      env=env_info(spec.device, threads, spec.seed), variants=[variant])
    path = write_results(out_dir(spec, "profile"), results)
    return ProfileOutput(path, results, layers, {k: v.median_ms for k, v in layer_lat.items()})
