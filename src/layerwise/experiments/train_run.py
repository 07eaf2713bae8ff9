"""``layerwise train``: train a registered model on a registered dataset, then measure it."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ..measure import profile_model
from ..results import Results, Variant, env_info, write_results
from ..train import TrainConfig, TrainResult, evaluate, train
from .common import RunSpec, build_for_data, check_device, example_input, load_data_for_model, out_dir, set_threads

log = logging.getLogger(__name__)


@dataclass
class TrainOutput:
    out_dir: Path
    results_path: Path | None
    train_result: TrainResult
    test_accuracy: float | None


def run_train(spec: RunSpec, config: TrainConfig, *, resume: bool = False, progress=None,
              model_kwargs: dict | None = None) -> TrainOutput:
    check_device(spec.device)
    threads = set_threads(spec.threads)
    data = load_data_for_model(spec)
    model = build_for_data(spec, data, **(model_kwargs or {}))
    directory = out_dir(spec, "train")
    result = train(model, data, config, out_dir=directory, resume=resume, progress=progress)
    if result.interrupted:
        return TrainOutput(directory, None, result, None)

    model.eval()
    test = evaluate(model, data.test, device=spec.device)
    x = example_input(data, 1, spec.device)
    fields = profile_model(model, x, threads=threads, n=50, warmup=5, batched=32).to_variant_fields()
    extra = dict(fields.pop("extra", {}))
    extra.update(
        accuracy_split="test", test_loss=test.loss, test_n=test.n,
        val_accuracy=result.final_val_acc, checkpoint=str(result.checkpoint),
        history=[asdict(r) for r in result.history], config=asdict(config), dataset_info=data.info,
    )
    variant = Variant(name="trained", accuracy=test.accuracy, extra=extra, **fields)
    results = Results(method="train", model=spec.model, dataset=data.label,
                      env=env_info(spec.device, threads, spec.seed), variants=[variant])
    path = write_results(directory, results)
    return TrainOutput(directory, path, result, test.accuracy)
