"""AdaLayerNet on any model in one call: ``module, report = layerwise.adalayer.apply(model, calib_loader, budget=0.25)``.

What ``layerwise compress`` does automatically, on a user's own ``nn.Module`` and
``torch.utils.data.DataLoader`` (batches read by :mod:`layerwise.data.batches`: tensors are not
enough here, the probes need targets, so ``(x, y)`` tuples or dicts through ``input_key`` /
``target_key``):

1. eq. (1): each compressible layer's sensitivity is measured on ``calib_loader`` (the
   validation role of the CLI), streamed one batch at a time, and its MAC share on one input;
2. eq. (2)-(3) and (6): the allocation knob is bisected until the REAL packed file fits
   ``budget * dense_bytes`` (:func:`~layerwise.adalayer.fit_budget`, the CLI's budget fit), dense
   bytes being the fp32 ``torch.save(state_dict)`` size of the model;
3. eq. (4): masks and per-channel B_l-bit codes; eq. (5): with ``train_loader`` a fine-tune
   (cross-entropy plus the sparsity term, masks fixed, straight-through fake-quant) over it;
4. bake: the returned module computes exactly what the packed file stores; ``packed_path`` writes
   the file, which :func:`~layerwise.adalayer.load_packed` reloads with ``model=`` a module of the
   same architecture (the registry does not know a user's module);
5. ``onnx_path``: an int8 QDQ ONNX file (:func:`~layerwise.adalayer.export_onnx_int8`) whose
   size, onnxruntime accuracy and distance from the module are reported beside the packed file's.

The given model is not modified (a copy is compressed).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batches import BatchKeys, check_reiterable, first_input, iter_batches, loader_accuracy, pair_loader
from ..errors import LayerwiseError
from ..train.evaluation import logits_of
from .config import AdaLayerConfig
from .packed import Architecture, write_packed
from .pipeline import compress_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdaLayerReport:
    """What :func:`apply` decided and measured.

    ``layers``: per compressed layer, the eq. (1)-(3) terms and the decision (``prune_ratio``,
    ``bits``, ``params`` before, ``params_after`` kept). Sizes in bytes: ``packed_bytes`` (the
    ``.lwpk`` file), ``dense_bytes`` (fp32 ``torch.save(state_dict)``), ``target_bytes`` =
    ``int(budget * dense_bytes)``; ``knob`` and ``evaluations``: the budget bisection.
    ``val_accuracy_before`` / ``_after``: top-1 of the given model and of the returned module on the
    validation loader (``calib_loader`` when none is given). ``onnx``: the int8 ONNX export
    (:class:`~layerwise.adalayer.onnx_check.OnnxInt8` as JSON plus its onnxruntime accuracy), when
    ``onnx_path`` was given. ``packed`` (the file's bytes) and ``quantized`` (the per-layer codes,
    for :func:`~layerwise.adalayer.export_onnx_int8`) are not part of :meth:`to_dict`.
    """

    budget: float
    target_bytes: int
    packed_bytes: int
    dense_bytes: int
    floor_bytes: int
    knob: float
    evaluations: int
    layers: tuple[dict, ...]
    skipped: tuple[dict, ...]
    sparsity: float
    architecture: str
    val_accuracy_before: float | None
    val_accuracy_after: float | None
    val_source: str
    finetune: dict | None = None
    packed_path: str | None = None
    onnx: dict | None = None
    packed: bytes = field(default=b"", repr=False, compare=False)
    quantized: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def fits(self) -> bool:
        """The packed file is within the budget."""
        return self.packed_bytes <= self.target_bytes

    @property
    def ratio(self) -> dict[str, float]:
        return {d["name"]: d["prune_ratio"] for d in self.layers}

    @property
    def bits(self) -> dict[str, int]:
        return {d["name"]: d["bits"] for d in self.layers}

    def to_dict(self) -> dict:
        return {"method": "adalayer", "budget": self.budget, "target_bytes": self.target_bytes,
                "packed_bytes": self.packed_bytes, "dense_bytes": self.dense_bytes,
                "packed_fraction": self.packed_bytes / self.dense_bytes, "fits": self.fits,
                "floor_bytes": self.floor_bytes, "knob": self.knob, "evaluations": self.evaluations,
                "layers": [dict(d) for d in self.layers], "skipped": [dict(d) for d in self.skipped],
                "sparsity": self.sparsity, "architecture": self.architecture,
                "val_accuracy_before": self.val_accuracy_before, "val_accuracy_after": self.val_accuracy_after,
                "val_source": self.val_source, "finetune": self.finetune, "packed_path": self.packed_path,
                "onnx": self.onnx}


@dataclass
class _LoaderSplits:
    """What :func:`compress_model` reads of a dataset's splits, from loaders: ``val`` streams the
    calibration loader's ``(x, y)`` batches; ``label`` names it in logs and the sensitivity cache key."""

    val: object
    train: object = None
    label: str = "user DataLoader"
    name: str = "user DataLoader"


def _data_fingerprint(loader: Iterable, keys: BatchKeys) -> str:
    """SHA-256 (first 16 hex digits) of every input and target of ``loader``, streamed: the sensitivity
    cache key's data part, so a cache never serves the sensitivities measured on other data."""
    import hashlib
    h = hashlib.sha256()
    for x, y in iter_batches(loader, keys):
        h.update(x.detach().cpu().contiguous().numpy().tobytes())
        if y is not None:
            h.update(y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _finetune_fn(loader: Iterable, keys: BatchKeys, epochs: int, lr: float, device: torch.device):
    """A streamed fine-tune over ``loader``: Adam, cosine learning rate per epoch, cross-entropy
    plus eq. (5)'s term (``extra_loss``), in train mode (BatchNorm statistics follow the masks)."""
    def run(model: nn.Module, extra_loss) -> dict:
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
        losses = []
        model.train()
        for _ in range(epochs):
            total, n = 0.0, 0
            for x, y in iter_batches(loader, keys, need_targets=True, device=device):
                out = model(x)
                loss = F.cross_entropy(logits_of(out), y) + extra_loss(model, out, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * int(x.shape[0])
                n += int(x.shape[0])
            sched.step()
            losses.append(total / max(n, 1))
        model.eval()
        return {"epochs": epochs, "lr": lr, "mean_loss_per_epoch": losses}
    return run


def apply(model: nn.Module, calib_loader: Iterable, *, val_loader: Iterable | None = None,
          input_key: str | None = None, target_key: str | None = None, budget: float = 0.25,
          train_loader: Iterable | None = None, finetune_epochs: int = 3, finetune_lr: float = 1e-3,
          config: AdaLayerConfig | None = None, packed_path: str | os.PathLike | None = None,
          onnx_path: str | os.PathLike | None = None, onnx_activations: str = "int8", onnx_int4: bool = False,
          cache_dir: str | os.PathLike | None = None) -> tuple[nn.Module, AdaLayerReport]:
    """AdaLayerNet on ``model`` under a size ``budget`` (a fraction of the dense fp32 file):
    returns ``(module, report)``; ``model`` itself is not modified.

    ``calib_loader`` (labelled) measures the per-layer sensitivities; ``val_loader`` (default: the
    calibration loader) scores the model before and after. ``train_loader`` (labelled) enables the
    eq. (5) fine-tune for ``finetune_epochs`` epochs at ``finetune_lr``; without it the compressed
    weights are the eq. (4) rounding of the given ones. ``config`` sets every other AdaLayerNet knob
    (:class:`~layerwise.adalayer.AdaLayerConfig`; its fine-tune fields are replaced by these
    arguments). ``cache_dir`` caches the sensitivities, keyed by the model's weights and a hash of the
    calibration data (one extra pass over it). ``packed_path`` writes the ``.lwpk`` file; ``onnx_path`` the int8 ONNX export
    (``onnx_activations``: ``"int8"`` or ``"float"``; ``onnx_int4``: layers at <= 4 bits stored as
    INT4; see :func:`~layerwise.adalayer.export_onnx_int8`).
    Raises :class:`~layerwise.adalayer.BudgetError` with the smallest feasible budget when it
    cannot be met, :class:`~layerwise.errors.LayerwiseError` on other bad input.
    """
    if not isinstance(model, nn.Module):
        raise LayerwiseError(f"apply needs a torch.nn.Module, got {type(model).__name__}")
    keys = BatchKeys(input_key, target_key)
    check_reiterable(calib_loader=calib_loader, val_loader=val_loader, train_loader=train_loader)
    if finetune_epochs < 0:
        raise LayerwiseError(f"finetune_epochs={finetune_epochs}: pass 0 or more")
    epochs = finetune_epochs if train_loader is not None else 0
    cfg = dataclasses.replace(config or AdaLayerConfig(), finetune_epochs=epochs, finetune_lr=finetune_lr).validate()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    val, val_source = (val_loader, "val_loader") if val_loader is not None else (calib_loader, "calib_loader")
    before, _ = loader_accuracy(model, val, keys)

    module = copy.deepcopy(model).eval()
    example = first_input(calib_loader, keys).to(device)
    with torch.no_grad():
        out = logits_of(module(example))
    if out.dim() != 2:
        raise LayerwiseError(f"the model outputs shape {tuple(out.shape)} for one input: AdaLayerNet's probes "
                             "need (batch, num_classes) logits")
    arch = Architecture.of_module(model, tuple(example.shape[1:]), int(out.shape[1]))
    data = _LoaderSplits(val=pair_loader(calib_loader, keys, need_targets=True))
    if cache_dir is not None:
        data.label = f"user DataLoader {_data_fingerprint(calib_loader, keys)}"
    finetune = _finetune_fn(train_loader, keys, epochs, finetune_lr, device) if epochs > 0 else None
    res = compress_model(module, data, arch, budget=budget, example_input=example, config=cfg, device=str(device),
                         cache_dir=Path(cache_dir) if cache_dir is not None else None, finetune=finetune)
    module = res.model.eval()
    after, _ = loader_accuracy(module, val, keys)
    dense_bytes = res.budget.dense_bytes
    written = None
    if packed_path is not None:
        written = str(write_packed(packed_path, res.packed))
    onnx = None
    if onnx_path is not None:
        from .onnx_check import export_onnx_int8, onnx_accuracy
        check = next(iter_batches(val, keys, max_batches=1, device=device))[0]
        exp = export_onnx_int8(module, example, onnx_path, quantized=res.quantized, calib_loader=calib_loader,
                               input_key=input_key, activations=onnx_activations, check_input=check,
                               int4=onnx_int4)
        acc = onnx_accuracy(exp.path, val, input_key=input_key, target_key=target_key)[0] if after is not None else None
        onnx = {**exp.to_json(), "val_accuracy": acc}
    layers = tuple({"name": p.name, "kind": p.kind, "prune_ratio": p.prune_ratio, "bits": p.bits, "params": p.params,
                    "params_after": p.params_after, "macs": p.macs, "importance": p.importance,
                    "accuracy_contribution": p.accuracy_contribution, "mac_share": p.mac_share,
                    "redundancy": p.redundancy} for p in res.plans)
    fit = res.budget
    report = AdaLayerReport(
        budget=budget, target_bytes=fit.target_bytes, packed_bytes=len(res.packed), dense_bytes=dense_bytes,
        floor_bytes=fit.floor_bytes, knob=fit.knob, evaluations=fit.evaluations, layers=layers,
        skipped=tuple(s.to_json() for s in res.skipped),
        sparsity=res.sparsity, architecture=arch.model, val_accuracy_before=before, val_accuracy_after=after,
        val_source=val_source, finetune=res.finetune if isinstance(res.finetune, dict) else None,
        packed_path=written, onnx=onnx, packed=res.packed, quantized=dict(res.quantized))
    log.info("AdaLayerNet: packed %d bytes (%.4f of dense %d, budget %g), val accuracy %s -> %s",
             report.packed_bytes, report.packed_bytes / dense_bytes, dense_bytes, budget, before, after)
    return module, report


__all__ = ["AdaLayerReport", "apply"]
