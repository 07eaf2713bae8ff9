"""Where MRLA-B's training time goes, side by side in one run (interleaved training steps).

Compares, on one batch of CIFAR-shaped input, one SGD step of:
  resnet            the plain bottleneck ResNet
  mrla-b/stack      MRLA-B, values stacked at every layer + one einsum (the reference's torch.cat growth)
  mrla-b/sum        MRLA-B, each value stored once per stage, one batched product (the default)
  mrla-b/loop       MRLA-B, values kept in a list and summed term by term
  mrla-l            MRLA-L
  ela/half-stack    MRLA-B (stack) with every second attention layer of each stage removed
  ela/half-sum      the same with the sum mode

Run:  python bench/ela_values.py --model resnet56 --batch 32 --rounds 8 --threads 2
      (--channels 1 --size 28: Fashion-MNIST-shaped input; --only NAME ...: a subset of the variants)
Prints per step the median and IQR of wall time and of the calling thread's CPU time
(``time.thread_time``, which a busy machine inflates less than wall time), and the ratios of
medians to the plain ResNet and to mrla-b/sum.

``--channels-last``: each variant also in PyTorch's channels_last memory format (``NAME/cl``: the
model's weights and the input batch converted; the same maths), timed in the same interleaved
rounds.

``--profile K``: afterwards, one more step of each variant under ``torch.profiler`` and the K
operators whose self CPU time differs most from the plain ResNet's, side by side (ms per step and
calls): where the attention layers' extra time goes. The profiler adds its own overhead, so read
the differences, not the totals.
"""

from __future__ import annotations

import argparse

import torch

from layerwise.ela.step_timing import compare_train_steps
from layerwise.malloc import keep_freed_memory
from layerwise.models import build_model
from layerwise.models.mrla import mrla_blocks


def _half(model):
    for name, block in mrla_blocks(model):
        if int(name.split(".")[-1]) % 2 == 1:
            block.skip_attention = True
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet56", choices=("resnet20", "resnet56", "resnet110"))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--only", nargs="+", metavar="NAME", help="time only these variants")
    p.add_argument("--channels-last", action="store_true",
                   help="also time each variant in the channels_last memory format (NAME/cl)")
    p.add_argument("--profile", type=int, default=0, metavar="K",
                   help="also profile one step of each variant and print the K operators whose self CPU time "
                        "differs most from the plain ResNet's")
    args = p.parse_args()
    # as the command line runs: freed tensor memory reused (LAYERWISE_MALLOC=default: glibc's own settings)
    malloc = "freed memory kept (mallopt)" if keep_freed_memory() else "the allocator's default settings"
    torch.manual_seed(0)
    shape = (args.channels, args.size, args.size)
    m = args.model
    builders = {
        "resnet": lambda: build_model(m, shape, 10),
        "mrla-b/stack": lambda: build_model(f"{m}-mrla-b", shape, 10, values="stack"),
        "mrla-b/sum": lambda: build_model(f"{m}-mrla-b", shape, 10, values="sum"),
        "mrla-b/loop": lambda: build_model(f"{m}-mrla-b", shape, 10, values="loop"),
        "mrla-l": lambda: build_model(f"{m}-mrla-l", shape, 10),
        "ela/half-stack": lambda: _half(build_model(f"{m}-ela", shape, 10, values="stack")),
        "ela/half-sum": lambda: _half(build_model(f"{m}-ela", shape, 10, values="sum")),
    }
    names = args.only or list(builders)
    unknown = sorted(set(names) - set(builders))
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(builders)}")
    names = list(dict.fromkeys(["resnet", "mrla-b/sum"] + names))  # the two references of the ratios
    models = {k: builders[k]() for k in names}
    x, y = torch.randn(args.batch, *shape), torch.randint(0, 10, (args.batch,))
    if args.channels_last:
        models.update({f"{k}/cl": _ChannelsLast(builders[k]()) for k in names})
    res = compare_train_steps(models, x, y, rounds=args.rounds, warmup=args.warmup, threads=args.threads)
    print(f"{m}, batch {args.batch}, {args.channels}x{args.size}x{args.size}, {res['resnet'].threads} threads, "
          f"n={args.rounds} interleaved SGD steps each (after {args.warmup} warm-up rounds); malloc: {malloc}")
    print(f"{'variant':16s} {'wall ms (IQR)':>16s} {'thread CPU ms (IQR)':>20s} {'CPU vs resnet':>14s} "
          f"{'CPU vs mrla-b/sum':>18s}")
    for k, r in res.items():
        wall = f"{r.median_ms:.0f} ({r.iqr_ms:.0f})"
        cpu = f"{r.thread_cpu_ms:.0f} ({r.thread_cpu_iqr_ms:.0f})"
        print(f"{k:16s} {wall:>16s} {cpu:>20s} {r.thread_cpu_ms / res['resnet'].thread_cpu_ms:14.2f} "
              f"{r.thread_cpu_ms / res['mrla-b/sum'].thread_cpu_ms:18.2f}")
    if args.profile:
        _print_profile({k: _op_times(mdl, x, y, args.threads) for k, mdl in models.items()}, args.profile)


class _ChannelsLast(torch.nn.Module):
    """A model whose weights and input are in channels_last memory format (outputs unchanged)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


def _op_times(model, x, y, threads: int) -> dict[str, tuple[float, int]]:
    """Self CPU ms and calls per operator of one SGD step (after one unprofiled step)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return {e.key: (e.self_cpu_time_total / 1e3, e.count) for e in prof.key_averages()}


def _print_profile(ops: dict[str, dict[str, tuple[float, int]]], k: int) -> None:
    names = list(ops)
    keys = set().union(*ops.values())
    base = ops["resnet"]
    diff = {op: max(abs(ops[n].get(op, (0.0, 0))[0] - base.get(op, (0.0, 0))[0]) for n in names) for op in keys}
    top = sorted(keys, key=lambda op: -diff[op])[:k]
    print(f"\nself CPU ms per step (calls), one profiled step each; the {k} operators that differ most from resnet")
    print(f"{'operator':34s}" + "".join(f"{n:>22s}" for n in names))
    for op in top:
        print(f"{op[:34]:34s}" + "".join(f"{ops[n].get(op, (0.0, 0))[0]:14.1f} ({ops[n].get(op, (0.0, 0))[1]:5d})"
                                       for n in names))
    print(f"{'total':34s}" + "".join(f"{sum(t for t, _ in ops[n].values()):14.1f}        " for n in names))


if __name__ == "__main__":
    main()
