"""The ``layerwise`` command: parses arguments, calls ``experiments``, prints.

Bad input exits with code 2 and one line on stderr that names the problem and the fix.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from .errors import LayerwiseError


def _fmt_int(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _fmt_shape(shape) -> str:
    return "x".join(str(s) for s in shape) if shape else "-"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _progress():
    from tqdm import tqdm
    return partial(tqdm, leave=False, dynamic_ncols=True, file=sys.stderr, disable=None)


def _add_common(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    if model:
        p.add_argument("--model", required=True, help="model registry name (see `layerwise list`)")
        p.add_argument("--checkpoint", type=Path, help="start from trained weights instead of training / random init")
    p.add_argument("--dataset", required=True,
                   help="dataset registry name, e.g. digits, basic-motions, mnist1d, aeon:NAME, cifar10:DIR")
    p.add_argument("--size", type=int, help="resize image data to SIZE x SIZE (e.g. 28 for MNIST-shaped models, 32 for CIFAR-shaped)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="image channels (3 repeats a grey image)")
    p.add_argument("--out", type=Path, help="results directory (default runs/COMMAND-MODEL-DATASET)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")


def _spec(args):
    from .experiments.common import RunSpec
    return RunSpec(model=args.model, dataset=args.dataset, size=args.size, channels=args.channels,
                   device=args.device, seed=args.seed, threads=args.threads, out=args.out,
                   checkpoint=getattr(args, "checkpoint", None))


def cmd_profile(args) -> int:
    from .experiments.profile import run_profile
    out = run_profile(_spec(args), granularity=args.granularity, n=args.n, warmup=args.warmup, batched=args.batched)
    res = out.results
    v = res.variants[0]
    rows = [[l.name, l.kind, _fmt_int(l.params), _fmt_int(l.macs), _fmt_shape(l.input_shape),
             _fmt_shape(l.output_shape), f"{out.layer_latency_ms.get(l.name, float('nan')):.3f}"]
            for l in out.layers]
    print(f"{res.model} on {res.dataset}  ({args.granularity} layers, batch 1, {res.env['threads']} threads)")
    print(_table(rows, ["layer", "kind", "params", "MACs", "input", "output", "ms (hooks)"]))
    lat, en = v.latency_ms, v.energy_j
    batched = v.extra.get("latency_batched_ms")
    print()
    print(f"params        {v.params:,}")
    print(f"MACs          {v.macs:,}  ({v.extra.get('macs_source', 'FlopCounterMode')})")
    print(f"size          {v.size_bytes:,} bytes (saved state_dict)")
    print(f"latency b=1   median {lat['median']:.3f} ms, IQR {lat['iqr']:.3f} ms, n={lat['n']}")
    if batched:
        print(f"latency b={batched['batch']}  median {batched['median']:.3f} ms, IQR {batched['iqr']:.3f} ms, n={batched['n']}")
    print(f"peak memory   {v.peak_mem_bytes / 2**20:.1f} MiB ({v.extra.get('memory_source', 'process')})")
    print(f"energy        {en['value']:.3g} J per inference ({'estimated, ' if en['estimated'] else ''}{en['source']})")
    if v.accuracy is not None:
        print(f"accuracy      {v.accuracy:.4f} (test split)")
    print(f"\nwrote {out.results_path}")
    return 0


def cmd_train(args) -> int:
    from .experiments.train_run import run_train
    from .train import TrainConfig
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                         weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed, device=args.device)
    out = run_train(_spec(args), config, resume=args.resume, progress=_progress(),
                    model_kwargs={"drop_path": args.drop_path} if args.drop_path else None)
    for rec in out.train_result.history:
        print(f"epoch {rec.epoch + 1:3d}  loss {rec.train_loss:.4f}  train acc {rec.train_acc:.4f}  "
              f"val acc {rec.val_acc:.4f}  {rec.time_s:.1f}s")
    if out.train_result.interrupted:
        print(f"interrupted: state saved to {out.train_result.checkpoint}; rerun with --resume to continue")
        return 130
    print(f"test accuracy {out.test_accuracy:.4f}")
    print(f"checkpoint    {out.train_result.checkpoint}")
    print(f"wrote {out.results_path}")
    return 0


def cmd_list(args) -> int:
    from .data import list_datasets
    from .models import list_models
    print("models:   " + ", ".join(list_models()))
    print("datasets: " + ", ".join(list_datasets()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="layerwise", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("profile", help="per-layer table: params, MACs, shapes, latency; totals with memory and energy")
    _add_common(p)
    p.add_argument("--granularity", choices=("leaf", "block"), default="leaf")
    p.add_argument("--n", type=int, default=100, help="timed runs per latency figure")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batched", type=int, default=32, help="batch size of the batched latency case")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("train", help="train a model; checkpoint every epoch; --resume continues")
    _add_common(p)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=None, help="default 3e-3 for adam, 0.1 for sgd")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", choices=("cosine", "step", "none"), default="cosine")
    p.add_argument("--drop-path", type=float, default=0.0, help="stochastic depth rate for residual models")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("list", help="registered models and datasets")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if getattr(args, "lr", "unset") is None:
        args.lr = 0.1 if args.optimizer == "sgd" else 3e-3
    try:
        return args.func(args)
    except LayerwiseError as exc:
        print(f"layerwise: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("layerwise: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
