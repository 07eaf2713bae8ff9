"""One training loop for every model: checkpoints, exact resume, Ctrl-C, divergence, DDP.

Exact resume. The order of the training set in epoch ``e`` is a permutation drawn from a private
``torch.Generator`` seeded with ``(seed, e)``; the global RNG is only used by the model (dropout,
stochastic depth) and by data transforms, and its state is saved in every checkpoint. So a run that
is stopped (between epochs or after ``k`` batches of an epoch) and resumed ends with exactly the
same weights as a run that never stopped, on the same device and thread count. A SIGKILL (or a
power loss) at any point, even in the middle of a checkpoint write, leaves the previous complete
checkpoint on disk (writes go to a temporary file renamed over the old one); resuming from it
redoes the lost batches exactly, and the temporary file of a killed write is removed.

Checked resume. Every field of the checkpoint is checked before anything is loaded, and a
checkpoint of another run (model architecture, dataset, seed, optimizer) is refused unless
``allow_foreign_checkpoint=True``; both are one-line CheckpointErrors naming the field or the
difference and the fix, and nothing on disk changes.

Ctrl-C. While ``train`` runs in the main thread, the first Ctrl-C only sets a flag: the current
batch finishes, a checkpoint records the epoch and the batches done in it, and ``train`` *returns*
a ``TrainResult`` with ``interrupted=True`` (callers must check it; the CLI prints how to resume).
A second Ctrl-C raises ``KeyboardInterrupt`` at once, as usual. A ``KeyboardInterrupt`` raised
between batches (for example by a progress bar) is handled the same way as the first Ctrl-C;
one raised in the middle of a batch saves nothing new and keeps the last checkpoint.

Distributed. Under ``torchrun`` every rank walks the same global permutation; each global batch
of ``(batch_size // world_size) * world_size`` samples is split across ranks (rank ``r`` takes
every ``world_size``-th sample), padded like ``DistributedSampler`` so each rank gets as many
samples. DDP averages the gradients, so a step sees the same global batch as a single process
would, and checkpoints (written by rank 0 only) resume exactly in either mode, except that dropout
RNG is per rank (rank 0's state is saved) and BatchNorm statistics are per rank until they are
broadcast from rank 0 at the end of each epoch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..data.augment import augment_batch, batch_generator
from ..data.base import DatasetSplits
from ..errors import CheckpointError, LayerwiseError, ShapeMismatchError, TrainingDivergedError
from . import distributed
from .checkpoint import (RUN_FIELDS, check_optimizer_state, check_scheduler_state, fit_state_dict, invalid,
                         load_checkpoint, optimizer_kind, run_identity, save_checkpoint, scheduler_kind)
from .config import EpochRecord, TrainConfig, TrainResult
from .evaluation import check_labels, evaluation_sums, logits_of
from .loaders import LoaderSplits

log = logging.getLogger(__name__)

__all__ = ["train", "epoch_batches"]

CHECKPOINT_NAME = "checkpoint.pt"


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0])


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> list[list[int]]:
    """Sample indices of every batch of one epoch for one rank, in order.

    Depends only on its arguments (a private generator seeded with ``(seed, epoch)``), so a resumed
    run can skip the batches it already did.
    """
    gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
    order = torch.randperm(n, generator=gen)
    per_rank = max(batch_size // world_size, 1)
    global_batch = per_rank * world_size
    if world_size > 1 and n % world_size:  # pad with the first samples, like DistributedSampler
        target = n + world_size - n % world_size
        order = order.repeat(math.ceil(target / n))[:target]
    return [order[i:i + global_batch][rank::world_size].tolist() for i in range(0, len(order), global_batch)]


class _DeferredInterrupt:
    """First SIGINT sets ``requested``; the previous handler is restored so a second one interrupts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> "_DeferredInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self._restore()
        log.warning("interrupt: stopping after the current batch and saving a checkpoint "
                    "(press Ctrl-C again to stop at once)")

    def _restore(self) -> None:
        if self._installed:
            previous = self._previous if self._previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, previous)
            self._installed = False

    def __exit__(self, *exc) -> None:
        self._restore()


def _fresh_partial() -> dict:
    return {"loss_sum": 0.0, "correct": 0.0, "seen": 0.0, "time_s": 0.0}


def _make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _make_scheduler(optimizer, config: TrainConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1))
    if config.schedule == "step":
        milestones = config.step_milestones or (config.epochs // 2, (config.epochs * 3) // 4)
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=sorted(milestones), gamma=config.step_gamma)
    return None


class _Trainer:
    """State of one ``train`` call; ``epoch``/``step``/``partial`` always describe the model's state
    when ``consistent`` is True (that is what an interrupt checkpoint records)."""

    def __init__(self, model: nn.Module, data: DatasetSplits, config: TrainConfig, ctx: distributed.DistContext,
                 device: torch.device, out_dir: Path | None, progress, loss_fn, extra_loss) -> None:
        self.module = model.to(device)
        self.data, self.config, self.ctx, self.device = data, config, ctx, device
        self.path = out_dir / CHECKPOINT_NAME if out_dir is not None else None
        self.progress, self.extra_loss = progress, extra_loss
        self.loss_fn_is_default = loss_fn is None
        self.loss_fn = loss_fn or nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.net = nn.parallel.DistributedDataParallel(
            self.module, device_ids=[device] if device.type == "cuda" else None) if ctx.enabled else self.module
        self.optimizer = _make_optimizer(self.module.parameters(), config)
        self.scheduler = _make_scheduler(self.optimizer, config)
        self.history: list[EpochRecord] = []
        self.epoch, self.step, self.partial = 0, 0, _fresh_partial()
        self.consistent = True
        self.saved_epochs: int | None = None  # epochs completed in the checkpoint on disk
        self.interrupt = _DeferredInterrupt()
        self.stop_agreed = False  # all ranks stopped at the same point (so collectives are safe)
        self.identity = run_identity(self.module, data, config)  # stored as "run" in every checkpoint
        self.outputs_checked = False

    # -- checkpoints -------------------------------------------------------------------------------
    def save(self) -> None:
        if self.path is None or not self.ctx.is_main:
            return
        save_checkpoint(self.path, self.module, self.optimizer, self.scheduler, epoch=self.epoch, step=self.step,
                        history=self.history, config=self.config, partial=self.partial,
                        extra={"global_batch": self._global_batch(), "world_size": self.ctx.world_size,
                               "run": self.identity})
        self.saved_epochs = self.epoch

    def _global_batch(self) -> int:
        return max(self.config.batch_size // self.ctx.world_size, 1) * self.ctx.world_size

    def restore(self, allow_foreign: bool = False) -> None:
        """Load the checkpoint: every field is checked (and the run identity compared) before
        anything is loaded, so a bad file is one CheckpointError and the model stays untouched."""
        path, cfg = self.path, self.config
        ck = load_checkpoint(path)  # types and ranges of every field
        self._check_identity(ck, allow_foreign)
        state = fit_state_dict(self.module, ck["model"], path)
        for key, t in state.items():  # train only ever saves finite weights
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise invalid(path, f"'model.{key}'", "holds NaN or inf")
        epoch, step = ck["epoch"], ck["step"]
        if len(ck["history"]) != epoch:
            raise invalid(path, "'history'", f"holds {len(ck['history'])} epoch records but 'epoch' is {epoch}")
        old = ck.get("config") or {}
        if step > 0 and (old.get("seed") != cfg.seed or ck.get("global_batch") != self._global_batch()):
            raise CheckpointError(
                f"{path} stopped in the middle of epoch {epoch + 1} with seed {old.get('seed')} and "
                f"global batch {ck.get('global_batch')}: resume with the same --seed and --batch-size")
        if isinstance(self.data, LoaderSplits):  # a user's loader: its length, when it has one
            n_batches = self.data.train_batch_count()
        else:
            n_batches = len(epoch_batches(len(self.data.train), cfg.batch_size, cfg.seed, epoch, self.ctx.rank,
                                          self.ctx.world_size))
        if n_batches is not None and step > n_batches:
            raise invalid(path, "'step'", f"is {step}, but an epoch of {len(self.data.train)} samples has "
                          f"{n_batches} batches of {self._global_batch()}")
        # the optimizer: same kind and shapes, or (allowed) a fresh one
        saved_opt, restart = ck.get("optimizer"), False
        foreign = "or pass --resume-any (allow_foreign_checkpoint=True) to continue its weights anyway"
        if saved_opt is None:
            log.warning("%s holds no optimizer state: the %s optimizer and the schedule start afresh at epoch %d",
                        path, cfg.optimizer, epoch + 1)
            restart = True
        else:
            kind = optimizer_kind(saved_opt)
            if kind is None:
                raise invalid(path, "'optimizer.param_groups'", "hold neither Adam nor SGD hyper-parameters")
            if kind != cfg.optimizer:
                if not allow_foreign:
                    raise invalid(path, "'optimizer'", f"is the state of {kind}, this run uses {cfg.optimizer}",
                                  f"resume with --optimizer {kind}, {foreign}")
                log.warning("%s: optimizer %s -> %s: the new optimizer and the schedule start afresh at epoch %d",
                            path, kind, cfg.optimizer, epoch + 1)
                restart = True
            else:
                check_optimizer_state(saved_opt, self.optimizer, kind, path)
        saved_sched = ck.get("scheduler")
        saved_kind = "none" if saved_sched is None else scheduler_kind(saved_sched) or "unknown"
        if not restart and saved_kind != cfg.schedule:
            if not allow_foreign or saved_kind == "unknown":
                raise invalid(path, "'scheduler'", f"is a {saved_kind} schedule, this run uses {cfg.schedule!r}",
                              f"resume with --schedule {saved_kind}, {foreign}" if saved_kind != "unknown" else
                              "it is damaged: start afresh in another --out (or replace it with --overwrite)")
            log.warning("%s: schedule %s -> %s: the schedule restarts at epoch %d", path, saved_kind, cfg.schedule,
                        epoch + 1)
            restart = True
        if not restart and self.scheduler is not None:
            check_scheduler_state(saved_sched, self.scheduler, cfg.schedule, epoch, path)
        rng = ck.get("rng") or {}
        cuda_rng = rng.get("cuda") or []
        restore_cuda = bool(cuda_rng) and torch.cuda.is_available() and len(cuda_rng) == torch.cuda.device_count()
        if restore_cuda and cuda_rng[0].numel() != torch.cuda.get_rng_state(0).numel():
            raise invalid(path, "'rng.cuda'", f"holds {cuda_rng[0].numel()}-byte states, this torch uses "
                          f"{torch.cuda.get_rng_state(0).numel()}")
        if "torch" not in rng:
            log.warning("%s holds no RNG state: dropout will not repeat an uninterrupted run", path)

        # everything checked: load
        self.module.load_state_dict(state)
        if restart:
            self._restart_schedule(epoch)
        else:
            self.optimizer.load_state_dict(saved_opt)
            if self.scheduler is not None:
                self.scheduler.load_state_dict(saved_sched)
        self.epoch, self.step = epoch, step
        self.partial = {**_fresh_partial(), **{k: float(v) for k, v in ck.get("partial", {}).items()}}
        self.history = [EpochRecord(**h) for h in ck["history"]]
        self.saved_epochs = self.epoch
        diffs = [f"{k} {old[k]!r} -> {v!r}" for k, v in dataclasses.asdict(cfg).items()
                 if k in old and old[k] != (list(v) if isinstance(v, tuple) and isinstance(old[k], list) else v)]
        if diffs:
            log.warning("resuming %s with a different config (%s): the run will not match an uninterrupted one",
                        path, ", ".join(diffs))
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if restore_cuda:
            torch.cuda.set_rng_state_all(cuda_rng)
        log.info("resumed from %s: %d epochs done, %d batches into epoch %d",
                 path, self.epoch, self.step, self.epoch + 1)

    def _check_identity(self, ck: dict, allow_foreign: bool) -> None:
        """Refuse a checkpoint written by another run (model, dataset, seed, optimizer)."""
        saved = ck.get("run")
        if saved is None:  # an older checkpoint: only its config tells seed and optimizer
            old = ck.get("config") or {}
            saved = {k: old[k] for k in ("seed", "optimizer") if k in old}
            log.warning("%s predates run records: cannot check that it was written for this model and dataset "
                        "(only seed and optimizer are compared)", self.path)
        now = self.identity
        diffs = []
        for k in RUN_FIELDS:
            if k in saved and saved[k] != now[k]:
                if k == "architecture":
                    diffs.append("architecture (layer types or parameter shapes) differs")
                else:
                    diffs.append(f"{k.replace('_', ' ')} {saved[k]!r} -> {now[k]!r}")
        if not diffs:
            return
        if not allow_foreign:
            raise CheckpointError(
                f"{self.path} belongs to another run ({'; '.join(diffs)}): resume with the same --model, --dataset, "
                "--seed and --optimizer, start afresh in another --out, or pass --resume-any "
                "(allow_foreign_checkpoint=True) to continue from it anyway")
        log.warning("resuming %s written by another run (%s), as allowed", self.path, "; ".join(diffs))

    def _restart_schedule(self, epoch: int) -> None:
        """A fresh optimizer (already built) and the schedule of this config advanced to ``epoch``."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr
            group.pop("initial_lr", None)
        self.scheduler = _make_scheduler(self.optimizer, self.config)
        if self.scheduler is not None:
            with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()"
                warnings.simplefilter("ignore")
                for _ in range(epoch):
                    self.scheduler.step()

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        start = time.perf_counter()
        with self.interrupt:
            try:
                while self.epoch < self.config.epochs:
                    if self._stop_agreed(self.interrupt.requested):
                        self.stop_agreed = True
                        raise KeyboardInterrupt
                    self.train_epoch()
            except KeyboardInterrupt:
                return self._interrupted(time.perf_counter() - start)
        if self.saved_epochs != self.epoch:  # e.g. resumed a finished run: make sure the file is current
            self.save()
        return self._result(False, time.perf_counter() - start)

    def _stop_agreed(self, local: bool) -> bool:
        flag = self.ctx.all_reduce_sum(torch.tensor([float(local)], dtype=torch.float64, device=self.device))
        return bool(flag.item() > 0)

    def _epoch_loader(self):
        """This epoch's remaining batches and their count (None: a loader that cannot tell)."""
        cfg, epoch = self.config, self.epoch
        if isinstance(self.data, LoaderSplits):  # a user's loader, read as it comes
            if self.ctx.enabled:
                raise LayerwiseError("training from a user's DataLoader runs in one process: run it without "
                                     "torchrun, or train on a DatasetSplits")
            count = self.data.train_batch_count()
            return self.data.train_batches(self.step), None if count is None else max(count - self.step, 0)
        batches = epoch_batches(len(self.data.train), cfg.batch_size, cfg.seed, epoch,
                                self.ctx.rank, self.ctx.world_size)
        remaining = batches[self.step:]
        # A generator of our own: DataLoader would otherwise draw its base seed from the global RNG.
        loader = DataLoader(self.data.train, batch_sampler=remaining, num_workers=0,
                            generator=torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch)),
                            pin_memory=self.device.type == "cuda")
        return loader, len(remaining)

    def train_epoch(self) -> None:
        cfg, epoch = self.config, self.epoch
        loader, total = self._epoch_loader()
        bar = loader
        if self.progress is not None and self.ctx.is_main:
            bar = self.progress(loader, total=total, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        lr = self.optimizer.param_groups[0]["lr"]
        self.module.train()
        tick = time.perf_counter()
        for x, y in bar:
            self.consistent = False
            stats, stop = self._train_batch(x, y)
            partial = dict(self.partial)
            partial["loss_sum"] += stats[0]
            partial["correct"] += stats[1]
            partial["seen"] += stats[2]
            now = time.perf_counter()
            partial["time_s"] += now - tick
            tick = now
            self.step, self.partial = self.step + 1, partial
            self.consistent = True
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{partial['loss_sum'] / partial['seen']:.4f}",
                                acc=f"{partial['correct'] / partial['seen']:.3f}")
            if stop:
                self.stop_agreed = True
                raise KeyboardInterrupt
        self.ctx.broadcast_buffers(self.module)
        loss_sum, correct, n = evaluation_sums(self.module, self._val_shard(), device=self.device)
        val = self.ctx.all_reduce_sum(torch.tensor([loss_sum, correct, n], dtype=torch.float64,
                                                   device=self.device)).tolist()
        val_loss, val_acc = val[0] / max(val[2], 1), val[1] / max(val[2], 1)
        if not math.isfinite(val_loss):
            self._diverged(val_loss, "on the validation set after")
        p = self.partial
        record = EpochRecord(epoch, p["loss_sum"] / max(p["seen"], 1), p["correct"] / max(p["seen"], 1),
                             val_loss, val_acc, p["time_s"], lr)
        self.consistent = False
        self.history.append(record)
        if self.scheduler is not None:
            self.scheduler.step()
        self.epoch, self.step, self.partial = epoch + 1, 0, _fresh_partial()
        self.consistent = True
        self.save()  # only reached with a finite loss, so the file always holds a good state
        log.info("epoch %d/%d: train loss %.4f acc %.4f, val loss %.4f acc %.4f, %.1fs", epoch + 1, cfg.epochs,
                 record.train_loss, record.train_acc, record.val_loss, record.val_acc, record.time_s)

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], bool]:
        check_labels(y, self.data.num_classes, f"the train split of dataset {self.data.name}")
        if self.config.augment:
            x = augment_batch(x, pad=4, hflip=bool(self.data.info.get("hflip_ok", False)),
                              generator=batch_generator(self.config.seed, self.epoch, self.step, self.ctx.rank))
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        outputs = self.net(x)
        if not self.outputs_checked:
            self._check_outputs(outputs, x)
        loss = self.loss_fn(outputs, y)
        if self.extra_loss is not None:
            loss = loss + self.extra_loss(self.module, outputs, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
        self.optimizer.step()
        correct = (logits_of(outputs).argmax(dim=1) == y).sum()
        # one small all-reduce per batch: global statistics, and every rank agrees on stopping
        stats = torch.stack([loss.detach().double() * y.numel(), correct.double(),
                             torch.tensor(float(y.numel()), dtype=torch.float64, device=self.device),
                             torch.tensor(float(self.interrupt.requested), dtype=torch.float64, device=self.device)])
        stats = self.ctx.all_reduce_sum(stats).tolist()
        if not math.isfinite(stats[0]):
            self._diverged(stats[0] / stats[2], f"at batch {self.step + 1} of")
        return stats[:3], stats[3] > 0

    def _check_outputs(self, outputs: Any, x: torch.Tensor) -> None:
        """The model's output width is the dataset's number of classes (checked on the first batch,
        before any step, so nothing is changed on disk)."""
        logits = logits_of(outputs)
        n = self.data.num_classes
        if not isinstance(logits, torch.Tensor):
            raise ShapeMismatchError(f"the model returns {type(logits).__name__}, not a tensor of logits: "
                                     "return (batch, num_classes) logits (or a tuple whose first item they are)")
        if logits.dim() == 2 and logits.shape[1] != n or logits.dim() != 2 and self.loss_fn_is_default:
            batch = tuple(getattr(x, "shape", ()))
            raise ShapeMismatchError(
                f"the model outputs shape {tuple(logits.shape)} for a batch {batch} but dataset {self.data.name} "
                f"has {n} classes: build the model with num_classes={n} (its last layer must give (batch, {n}) "
                "logits), or pick the dataset it was made for")
        self.outputs_checked = True

    def _val_shard(self):
        if isinstance(self.data, LoaderSplits):
            return self.data.val_batches()
        val = self.data.val
        if not self.ctx.enabled:
            return val
        return Subset(val, list(range(self.ctx.rank, len(val), self.ctx.world_size)))

    def _diverged(self, value: float, where: str) -> None:
        if self.saved_epochs is not None and self.path is not None:
            kept = f"the last good checkpoint {self.path} (after epoch {self.saved_epochs}) is kept"
        else:
            kept = "no checkpoint was written"
        raise TrainingDivergedError(
            f"training diverged: the loss became {value} {where} epoch {self.epoch + 1} (lr "
            f"{self.optimizer.param_groups[0]['lr']:g}); {kept}: lower the learning rate (--lr) or clip gradients")

    def _interrupted(self, elapsed: float) -> TrainResult:
        where = f"epoch {self.epoch + 1}, after {self.step} batches"
        finite = all(bool(torch.isfinite(t).all()) for t in self.module.state_dict().values()
                     if isinstance(t, torch.Tensor) and t.is_floating_point())
        if self.ctx.enabled and not self.stop_agreed:  # one rank alone: collectives would hang
            log.warning("interrupted in %s: ranks did not stop together, kept %s", where, self.path)
        elif self.consistent and finite and self.path is not None:
            self.ctx.broadcast_buffers(self.module)
            self.save()
            log.warning("interrupted in %s: saved %s; resume with the same out_dir and resume=True", where, self.path)
        elif self.path is not None:
            log.warning("interrupted in the middle of a batch (%s): kept %s from epoch %s", where, self.path,
                        self.saved_epochs)
        else:
            log.warning("interrupted in %s: no out_dir, so nothing was saved", where)
        return self._result(True, elapsed)

    def _result(self, interrupted: bool, elapsed: float) -> TrainResult:
        last = self.history[-1] if self.history else None
        on_disk = self.path if self.path is not None and self.path.is_file() else None
        return TrainResult(history=list(self.history), epochs_completed=len(self.history), interrupted=interrupted,
                           checkpoint=on_disk, final_val_acc=last.val_acc if last else math.nan,
                           final_val_loss=last.val_loss if last else math.nan,
                           interrupted_step=self.step if interrupted else 0,
                           world_size=self.ctx.world_size, time_s=elapsed)


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files of checkpoint writes that were killed (SIGKILL, power loss) before the rename."""
    for tmp in out.glob(f".{CHECKPOINT_NAME}.*.tmp"):
        try:
            tmp.unlink()
            log.info("removed %s, left by a checkpoint write that was killed", tmp)
        except OSError:
            pass


def train(model: nn.Module, data: DatasetSplits, config: TrainConfig, *, out_dir: str | Path | None = None,
          resume: bool = False, progress: Callable | None = None,
          loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
          extra_loss: Callable[[nn.Module, Any, torch.Tensor], torch.Tensor] | None = None,
          allow_foreign_checkpoint: bool = False) -> TrainResult:
    """Train ``model`` (in place, moved to ``config.device``) on ``data.train``; validate on ``data.val``.

    ``data`` is a :class:`~layerwise.data.base.DatasetSplits` (read by index: exact resume) or a
    :class:`~layerwise.train.loaders.LoaderSplits` of a user's DataLoaders (read as they come).

    - ``out_dir``: ``out_dir/checkpoint.pt`` is rewritten atomically after every finite epoch and on
      interrupt; ``resume=True`` continues from it (and fails with a LayerwiseError if it is absent).
      Every field of the checkpoint is checked first (CheckpointError naming the field otherwise),
      and a checkpoint written by another run (other model architecture, dataset, seed or
      optimizer, see :func:`~layerwise.train.checkpoint.run_identity`) is refused unless
      ``allow_foreign_checkpoint=True`` (CLI ``--resume-any``), which continues from its weights
      with a warning (a fresh optimizer/schedule if the optimizer or schedule kind differs).
      Stale ``.checkpoint.pt.*.tmp`` files of a write killed midway are removed.
    - ``progress``: a tqdm-like factory ``progress(iterable, total=, desc=, leave=)``; its bar gets
      the running loss and accuracy as postfix. Nothing is printed otherwise; epochs are logged.
    - ``loss_fn(outputs, targets)``: default cross-entropy with ``config.label_smoothing``.
    - ``extra_loss(model, outputs, targets)``: a regulariser added to the loss (AdaLayerNet's L1,
      LWAC's eq. 5, ...); ``model`` is the bare module, never the DDP wrapper.

    Returns a TrainResult; on Ctrl-C it returns with ``interrupted=True`` (see the module docstring).
    Raises TrainingDivergedError on a NaN/inf loss, leaving the previous checkpoint untouched, and
    ShapeMismatchError on the first batch if the model's output width is not ``data.num_classes``.
    """
    config.validate()
    if not isinstance(allow_foreign_checkpoint, bool):
        raise LayerwiseError(f"allow_foreign_checkpoint={allow_foreign_checkpoint!r}: pass True or False")
    out = Path(out_dir) if out_dir is not None else None
    if resume:
        if out is None:
            raise LayerwiseError("resume needs the output directory of a previous run: pass --out DIR with --resume")
        if not (out / CHECKPOINT_NAME).is_file():
            raise LayerwiseError(f"cannot resume: {out / CHECKPOINT_NAME} does not exist; --resume needs a previous "
                                 "run with the same --out (drop --resume to start afresh)")
    if not isinstance(data, LoaderSplits) and (len(data.train) == 0 or len(data.val) == 0):
        raise LayerwiseError(f"dataset {data.name} has an empty train or val split: check its files and split rule")
    ctx, device = distributed.setup(config.device)
    trainer = _Trainer(model, data, config, ctx, device, out, progress, loss_fn, extra_loss)
    if out is not None and ctx.is_main:
        _remove_stale_temporaries(out)
    if resume:
        trainer.restore(allow_foreign_checkpoint)
    if ctx.enabled:
        log.info("distributed training: rank %d of %d, %d samples per rank per step",
                 ctx.rank, ctx.world_size, trainer._global_batch() // ctx.world_size)
    result = trainer.run()
    distributed.teardown(ctx)  # not on errors: a rank failing alone must not wait for the others
    return result
