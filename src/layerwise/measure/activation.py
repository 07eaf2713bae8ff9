"""Peak activation memory at batch 1: the bytes of activation tensors alive at the same time.

This is what decides whether a network fits a microcontroller's SRAM (MCUNet reports the same
quantity), as opposed to the process's resident memory, which holds the framework too.

Method: the model is traced with ``torch.fx`` and run node by node in eager order on one input;
each node's output storage is recorded. A storage is alive from the node that creates it until
the last node that reads it or any view/in-place result sharing it (views and in-place ops such
as ``ReLU(inplace=True)`` share storage, so they add no bytes). The live set at each node is the
input buffer plus every activation storage alive at that step; the peak is its maximum. Weights
and buffers (``get_attr``, module parameters) are not activations (they live in flash/ROM) and are
excluded. The figures assume the eager execution order and no memory planner that reuses buffers
across steps beyond freeing dead tensors, i.e. a plain layer-by-layer runtime.

When the model cannot be traced (data-dependent control flow), :func:`activation_memory` falls
back to forward hooks on leaf modules and reports ``max(input + output bytes)`` over them, labelled
as a lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ActivationMemory:
    """``peak_bytes`` at batch 1; ``per_node`` rows: name, op, new output bytes, bytes live there."""

    peak_bytes: int
    peak_at: str
    source: str
    exact: bool
    per_node: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"peak_bytes": self.peak_bytes, "peak_at": self.peak_at, "source": self.source,
                "exact": self.exact, "per_node": self.per_node}


def _storages(value) -> list[torch.UntypedStorage]:
    if isinstance(value, torch.Tensor):
        return [value.untyped_storage()]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _storages(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _storages(v)]
    return []


def _traced(model: nn.Module, x: torch.Tensor) -> ActivationMemory:
    from torch.fx import Interpreter, symbolic_trace

    gm = symbolic_trace(model)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    nodes = list(gm.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    produced: dict[int, tuple[int, int]] = {}     # storage ptr -> (first step, bytes)
    node_ptrs: dict = {}                           # node -> storage ptrs of its output
    new_bytes: dict = {}
    keep: list = []                                # hold outputs so that no storage is freed and reused

    class Recorder(Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            keep.append(out)
            ptrs, added = [], 0
            for st in _storages(out):
                ptr = st.data_ptr()
                if ptr == 0 or ptr in params or n.op == "get_attr":
                    continue
                ptrs.append(ptr)
                if ptr not in produced:
                    produced[ptr] = (index[n], st.nbytes())
                    added += st.nbytes()
            node_ptrs[n] = ptrs
            new_bytes[n] = added
            return out

    with torch.inference_mode():
        Recorder(gm).run(x)
    last: dict[int, int] = {ptr: first for ptr, (first, _) in produced.items()}
    for n in nodes:
        end = max((index[u] for u in n.users), default=index[n])
        if n.op == "output":
            end = len(nodes) - 1
        for ptr in node_ptrs.get(n, []):
            last[ptr] = max(last[ptr], end)
    rows, peak, peak_at = [], 0, ""
    for i, n in enumerate(nodes):
        live = sum(b for ptr, (first, b) in produced.items() if first <= i <= last[ptr])
        if n.op in ("call_module", "call_function", "call_method", "placeholder"):
            rows.append({"name": n.name, "op": str(n.target) if n.op != "call_module" else n.target,
                         "new_bytes": new_bytes.get(n, 0), "live_bytes": live})
        if live > peak:
            peak, peak_at = live, n.name
    return ActivationMemory(peak, peak_at, "torch.fx trace, liveness of activation storages in eager order "
                                           "(views and in-place ops share storage; weights excluded)",
                            True, rows)


def _hooked(model: nn.Module, x: torch.Tensor, reason: str) -> ActivationMemory:
    rows = []

    def hook(mod, inputs, output, name):
        ib = sum(s.nbytes() for s in _storages(inputs))
        ob = sum(s.nbytes() for s in _storages(output))
        rows.append({"name": name, "op": type(mod).__name__, "new_bytes": ob, "live_bytes": ib + ob})

    handles = [m.register_forward_hook(lambda mod, i, o, name=name: hook(mod, i, o, name))
               for name, m in model.named_modules() if not list(m.children())]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    best = max(rows, key=lambda r: r["live_bytes"], default={"name": "", "live_bytes": 0})
    return ActivationMemory(best["live_bytes"], best["name"],
                            f"lower bound: largest input + output of one leaf module (the graph could not be "
                            f"traced: {reason})", False, rows)


def activation_memory(model: nn.Module, x: torch.Tensor) -> ActivationMemory:
    """Peak bytes of simultaneously live activations for input ``x`` (use batch 1)."""
    was_training = model.training
    model.eval()
    try:
        try:
            return _traced(model, x)
        except Exception as exc:  # noqa: BLE001 - any tracing failure: fall back to hooks, say why
            return _hooked(model, x, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}")
    finally:
        model.train(was_training)
