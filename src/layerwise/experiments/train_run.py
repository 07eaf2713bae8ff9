"""``layerwise train``: train a registered model on a registered dataset, then measure it."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import LayerwiseError
from ..measure import profile_model
from ..results import Results, Variant, env_info, write_results
from ..train import TrainConfig, TrainResult, evaluate, train
from .common import (CommandReport, RunSpec, add_common_arguments, build_for_data, check_device, default_out,
                     example_input, load_data_for_model, prepared_out_dir, set_threads, spec_from_args)

log = logging.getLogger(__name__)


@dataclass
class TrainOutput:
    out_dir: Path
    results_path: Path | None
    train_result: TrainResult
    test_accuracy: float | None


def check_epochs(epochs: int, resume: bool) -> None:
    if epochs < 0:
        raise LayerwiseError(f"--epochs must be 0 or more, not {epochs}")
    if epochs == 0 and not resume:
        raise LayerwiseError("--epochs 0 trains nothing: pass --epochs 1 or more (with --resume, --epochs 0 "
                             "re-evaluates the saved checkpoint without training)")


def run_train(spec: RunSpec, config: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress=None,
              allow_foreign_checkpoint: bool = False,
              model_kwargs: dict | None = None) -> TrainOutput:
    """Train, evaluate and write ``results.json``; the output folder is checked and locked first, and
    a fresh run (no ``resume``) refuses a folder holding a checkpoint unless ``overwrite``."""
    check_device(spec.device)
    check_epochs(config.epochs, resume)
    folder = spec.out if spec.out is not None else default_out("train", spec.model, spec.dataset)
    with prepared_out_dir(folder, "train", resume=resume, overwrite=overwrite) as directory:
        return _run_train(spec, config, directory, resume=resume, progress=progress, model_kwargs=model_kwargs,
                          allow_foreign_checkpoint=allow_foreign_checkpoint)


def _run_train(spec: RunSpec, config: TrainConfig, directory: Path, *, resume: bool, progress,
               allow_foreign_checkpoint: bool = False,
               model_kwargs: dict | None) -> TrainOutput:
    threads = set_threads(spec.threads)
    data = load_data_for_model(spec)
    model = build_for_data(spec, data, **(model_kwargs or {}))
    result = train(model, data, config, out_dir=directory, resume=resume, progress=progress,
                   allow_foreign_checkpoint=allow_foreign_checkpoint)
    if result.interrupted:
        return TrainOutput(directory, None, result, None)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 evaluates and writes results
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


NAME = "train"
HELP = "train a model; checkpoint every epoch; --resume continues"


def add_arguments(p) -> None:
    add_common_arguments(p, training=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=None, help="default 3e-3 for adam, 0.1 for sgd")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", choices=("cosine", "step", "none"), default="cosine")
    p.add_argument("--drop-path", type=float, default=0.0, help="stochastic depth rate for residual models")
    p.add_argument("--drop-path-schedule", choices=("linear", "constant"), default=None,
                   help="stochastic depth per block: rising linearly with depth, or the same rate everywhere "
                        "(default: the model's own)")
    p.add_argument("--zero-init-residual", action="store_true",
                   help="start each residual branch's last BatchNorm at zero (blocks begin as identities; "
                        "what LWAC's bypass-robust base models use)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--resume-any", action="store_true",
                   help="with --resume: continue from OUT/checkpoint.pt even if another run wrote it (other "
                        "model, dataset, seed or optimizer); a warning names what differs")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh even if OUT holds another run's checkpoint, replacing it "
                        "(without it such a run refuses to start)")


def _model_kwargs(args) -> dict | None:
    """The residual-model options the user set (a model that lacks one says so by name)."""
    kwargs = {}
    if args.drop_path:
        kwargs["drop_path"] = args.drop_path
    if args.drop_path_schedule is not None:
        kwargs["drop_path_schedule"] = args.drop_path_schedule
    if args.zero_init_residual:
        kwargs["zero_init_residual"] = True
    return kwargs or None


def run_command(args, progress=None) -> CommandReport:
    lr = args.lr if args.lr is not None else (0.1 if args.optimizer == "sgd" else 3e-3)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=lr,
                         weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed,
                         device=args.device, augment=args.augment)
    out = run_train(spec_from_args(args), config, resume=args.resume or args.resume_any, overwrite=args.overwrite,
                    progress=progress, allow_foreign_checkpoint=args.resume_any,
                    model_kwargs=_model_kwargs(args))
    lines = [f"epoch {r.epoch + 1:3d}  loss {r.train_loss:.4f}  train acc {r.train_acc:.4f}  "
             f"val acc {r.val_acc:.4f}  {r.time_s:.1f}s" for r in out.train_result.history]
    if out.train_result.interrupted:
        lines.append(f"interrupted: state saved to {out.train_result.checkpoint}; rerun with --resume to continue")
        return CommandReport("\n".join(lines), 130)
    if out.results_path is None:  # a non-zero torchrun rank: rank 0 reports
        return CommandReport("\n".join(lines[-1:]))
    lines += [f"test accuracy {out.test_accuracy:.4f}", f"checkpoint    {out.train_result.checkpoint}",
              f"wrote {out.results_path}"]
    return CommandReport("\n".join(lines))
