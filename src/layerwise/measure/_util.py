"""Small helpers shared by the measurement functions: calling a model on an example input,
eval mode that is restored afterwards, an explicit thread count that is restored afterwards,
and building a batch from an example."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..errors import LayerwiseError


@contextlib.contextmanager
def module_hooks(modules: dict[str, torch.nn.Module], pre: Callable | None = None,
                 post: Callable | None = None) -> Iterator[None]:
    """Register ``pre(name)`` / ``post(name)`` hook factories on each named module; always removed."""
    handles = []
    try:
        for name, mod in modules.items():
            if pre is not None:
                handles.append(mod.register_forward_pre_hook(pre(name)))
            if post is not None:
                handles.append(mod.register_forward_hook(post(name)))
        yield
    finally:
        for h in handles:
            h.remove()


def call(model: Callable, example_input: Any) -> Any:
    """``model(x)`` for a tensor, ``model(*x)`` for a tuple/list, ``model(**x)`` for a dict."""
    if isinstance(example_input, (tuple, list)):
        return model(*example_input)
    if isinstance(example_input, dict):
        return model(**example_input)
    return model(example_input)


def tensors_of(example_input: Any) -> list[torch.Tensor]:
    if isinstance(example_input, torch.Tensor):
        return [example_input]
    if isinstance(example_input, (tuple, list)):
        return [t for x in example_input for t in tensors_of(x)]
    if isinstance(example_input, dict):
        return [t for x in example_input.values() for t in tensors_of(x)]
    return []


def device_of(example_input: Any, model: Any = None) -> torch.device:
    """The device of the first tensor in the input (else of the model's first parameter, else cpu)."""
    ts = tensors_of(example_input)
    if ts:
        return ts[0].device
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a clock read after it covers them (no-op on CPU)."""
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)


def batch_size_of(example_input: Any, batch_dim: int = 0) -> int | None:
    ts = [t for t in tensors_of(example_input) if t.dim() > batch_dim]
    return int(ts[0].shape[batch_dim]) if ts else None


def make_batch(example_input: Any, batch: int, batch_dim: int = 0) -> Any:
    """Repeat every tensor of ``example_input`` along ``batch_dim`` to exactly ``batch`` rows.

    Tensors whose size along ``batch_dim`` is already ``batch`` are returned unchanged; others are
    tiled and cut, so a batch-1 example becomes ``batch`` copies of itself.
    """
    if batch < 1:
        raise LayerwiseError(f"batch must be >= 1, got {batch}")

    def rep(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            if x.dim() <= batch_dim:
                raise LayerwiseError(
                    f"cannot batch a tensor of shape {tuple(x.shape)} along dim {batch_dim}: pass batch_dim")
            have = x.shape[batch_dim]
            if have == batch:
                return x
            reps = -(-batch // have)
            return torch.cat([x] * reps, dim=batch_dim).narrow(batch_dim, 0, batch).contiguous()
        if isinstance(x, tuple):
            return tuple(rep(v) for v in x)
        if isinstance(x, list):
            return [rep(v) for v in x]
        if isinstance(x, dict):
            return {k: rep(v) for k, v in x.items()}
        return x

    return rep(example_input)


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Put every submodule in eval mode; restore each module's own flag afterwards."""
    if not isinstance(model, torch.nn.Module):
        yield
        return
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, was in flags:
            m.training = was


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Set torch's intra-op thread count explicitly (the current one when ``None``); restore it."""
    before = torch.get_num_threads()
    use = before if threads is None else int(threads)
    if use < 1:
        raise LayerwiseError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(use)
    try:
        yield use
    finally:
        torch.set_num_threads(before)
