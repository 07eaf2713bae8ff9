"""The training loop: accuracy, checkpoints, exact resume, Ctrl-C, divergence, weights, DDP."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from layerwise.data.base import DatasetSplits, make_loader
from layerwise.errors import CheckpointError, LayerwiseError, TrainingDivergedError
from layerwise.train import (FORMAT, TrainConfig, epoch_batches, evaluate, load_checkpoint, load_weights, predict,
                             save_checkpoint, train)

DIM, CLASSES = 8, 4


def make_splits(n_train: int = 320, n_val: int = 128, n_test: int = 128, seed: int = 0) -> DatasetSplits:
    """Four Gaussian blobs in 8-D: linearly separable with a little noise."""
    gen = torch.Generator().manual_seed(seed)
    centers = 3.0 * torch.randn(CLASSES, DIM, generator=gen)

    def split(n: int) -> TensorDataset:
        y = torch.randint(0, CLASSES, (n,), generator=gen)
        x = centers[y] + 0.7 * torch.randn(n, DIM, generator=gen)
        return TensorDataset(x.float(), y.long())

    return DatasetSplits(name="blobs", train=split(n_train), val=split(n_val), test=split(n_test),
                         input_shape=(DIM,), num_classes=CLASSES, kind="series")


def make_model(seed: int = 0, dropout: float = 0.2) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(DIM, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(32, CLASSES))


CONFIG = TrainConfig(epochs=4, batch_size=32, lr=1e-2, seed=3)  # 10 batches per epoch


class StopAt:
    """A progress factory that raises KeyboardInterrupt (as Ctrl-C would) before batch ``k`` of
    epoch call number ``call`` (0-based, counting this train() call's epochs)."""

    def __init__(self, call: int, k: int, sigint: bool = False) -> None:
        self.call, self.k, self.sigint, self.calls, self.postfix = call, k, sigint, 0, []

    def __call__(self, iterable, total=None, desc=None, leave=False):
        outer, this_call = self, self.calls
        self.calls += 1

        class Bar:
            def __iter__(self):
                for i, item in enumerate(iterable):
                    if this_call == outer.call and i == outer.k:
                        if outer.sigint:  # a real SIGINT while the batch runs: it must still finish
                            signal.raise_signal(signal.SIGINT)
                        else:
                            raise KeyboardInterrupt
                    yield item

            def set_postfix(self, **kw):
                outer.postfix.append(kw)

        return Bar()


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


@pytest.fixture(scope="module")
def splits() -> DatasetSplits:
    return make_splits()


@pytest.fixture(scope="module")
def reference(splits, tmp_path_factory):
    """An uninterrupted run: the model, its result and its output directory."""
    out = tmp_path_factory.mktemp("reference")
    model = make_model(0)
    result = train(model, splits, CONFIG, out_dir=out)
    return model, result, out


def test_reaches_high_accuracy_and_reports_history(reference, splits):
    model, result, out = reference
    assert not result.interrupted
    assert result.epochs_completed == 4 and [r.epoch for r in result.history] == [0, 1, 2, 3]
    assert result.final_val_acc >= 0.95
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.history[0].lr == pytest.approx(1e-2)
    assert result.history[-1].lr < result.history[0].lr  # cosine schedule
    assert evaluate(model, splits.test).accuracy >= 0.95
    assert result.checkpoint == out / "checkpoint.pt" and result.checkpoint.is_file()


def test_progress_gets_running_loss_and_accuracy(splits):
    bar = StopAt(call=-1, k=-1)
    train(make_model(0), splits, TrainConfig(epochs=1, batch_size=32), progress=bar)
    assert bar.calls == 1 and len(bar.postfix) == 10
    assert set(bar.postfix[-1]) == {"loss", "acc"} and 0.0 <= float(bar.postfix[-1]["acc"]) <= 1.0


def test_evaluate_and_predict(reference, splits):
    model, _, _ = reference
    ev = evaluate(model, splits.test, batch_size=50)
    assert 0.0 <= ev.accuracy <= 1.0 and ev.n == len(splits.test) and ev.loss > 0
    assert evaluate(model, make_loader(splits.test, 64)).accuracy == pytest.approx(ev.accuracy)
    pred = predict(model, splits.test)
    assert pred.logits.shape == (len(splits.test), CLASSES) and pred.targets.shape == (len(splits.test),)
    assert (pred.predicted == pred.targets).float().mean().item() == pytest.approx(ev.accuracy)
    untrained = make_model(1)
    untrained.train()
    evaluate(untrained, splits.val)
    assert untrained.training


def test_checkpoint_loads_weights_only(reference):
    model, result, out = reference
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["format"] == FORMAT == "layerwise.checkpoint/1"
    assert ck["epoch"] == 4 and ck["step"] == 0
    assert [h["epoch"] for h in ck["history"]] == [0, 1, 2, 3]
    assert all(isinstance(v, float) for v in ck["history"][0].values() if not isinstance(v, int))
    assert ck["config"]["batch_size"] == 32 and ck["optimizer"]["state"] and ck["scheduler"]["last_epoch"] == 4
    assert ck["rng"]["torch"].dtype == torch.uint8
    for k, v in model.state_dict().items():
        assert torch.equal(ck["model"][k], v)


@pytest.mark.parametrize("stops", [
    [(2, 0)],            # Ctrl-C between epochs (before the first batch of the third epoch)
    [(1, 3)],            # Ctrl-C in the middle of the second epoch
    [(0, 7), (2, 1)],    # twice: the second stop is counted from the resumed run's first epoch
], ids=["between-epochs", "mid-epoch", "twice"])
def test_interrupt_and_resume_is_exact(stops, reference, splits, tmp_path):
    ref_model, ref_result, _ = reference
    model = make_model(0)
    done_epochs = 0
    for i, (call, k) in enumerate(stops):
        if i > 0:
            model = make_model(100 + i)  # a fresh process would build a fresh model
        result = train(model, splits, CONFIG, out_dir=tmp_path, resume=i > 0, progress=StopAt(call, k))
        assert result.interrupted
        ck = load_checkpoint(tmp_path / "checkpoint.pt")
        assert (ck["epoch"], ck["step"]) == (done_epochs + call, k)
        assert (result.epochs_completed, result.interrupted_step) == (done_epochs + call, k)
        done_epochs += call
    resumed = make_model(99)
    result = train(resumed, splits, CONFIG, out_dir=tmp_path, resume=True)
    assert not result.interrupted and result.epochs_completed == 4
    assert_same_state(resumed, ref_model)
    for a, b in zip(result.history, ref_result.history):
        assert (a.epoch, a.train_loss, a.train_acc, a.val_loss, a.val_acc, a.lr) == \
               (b.epoch, b.train_loss, b.train_acc, b.val_loss, b.val_acc, b.lr)


def test_real_sigint_finishes_the_batch_then_resumes_exactly(reference, splits, tmp_path):
    ref_model, _, _ = reference
    before = signal.getsignal(signal.SIGINT)   # Python's default, or SIG_IGN in a shell's background job
    result = train(make_model(0), splits, CONFIG, out_dir=tmp_path, progress=StopAt(1, 4, sigint=True))
    assert result.interrupted and (result.epochs_completed, result.interrupted_step) == (1, 5)
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    resumed = make_model(5)
    train(resumed, splits, CONFIG, out_dir=tmp_path, resume=True)
    assert_same_state(resumed, ref_model)


def test_resume_without_checkpoint_names_the_path(splits, tmp_path):
    with pytest.raises(LayerwiseError, match="checkpoint.pt") as info:
        train(make_model(), splits, CONFIG, out_dir=tmp_path / "nothing", resume=True)
    assert str(tmp_path / "nothing" / "checkpoint.pt") in str(info.value) and "--out" in str(info.value)


def test_nan_loss_keeps_last_good_checkpoint(splits, tmp_path):
    calls = {"n": 0}
    ce = nn.CrossEntropyLoss()

    def loss_fn(outputs, targets):  # NaN from the 4th batch of the second epoch on
        calls["n"] += 1
        loss = ce(outputs, targets)
        return loss * float("nan") if calls["n"] > 13 else loss

    with pytest.raises(TrainingDivergedError) as info:
        train(make_model(), splits, CONFIG, out_dir=tmp_path, loss_fn=loss_fn)
    msg = str(info.value)
    assert "epoch 2" in msg and "batch 4" in msg and str(tmp_path / "checkpoint.pt") in msg
    assert "learning rate" in msg
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 1 and ck["step"] == 0 and len(ck["history"]) == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_huge_learning_rate_diverges_without_checkpoint(splits, tmp_path):
    config = TrainConfig(epochs=2, batch_size=32, optimizer="sgd", lr=1e30)
    with pytest.raises(TrainingDivergedError, match="no checkpoint was written.*learning rate"):
        train(make_model(dropout=0.0), splits, config, out_dir=tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_extra_loss_is_added(splits):
    seen = []

    def l1(model, outputs, targets):
        seen.append(isinstance(model, nn.Sequential))
        return 1e-3 * sum(p.abs().sum() for p in model.parameters())

    base = train(make_model(0), splits, TrainConfig(epochs=1, batch_size=32))
    reg = train(make_model(0), splits, TrainConfig(epochs=1, batch_size=32), extra_loss=l1)
    assert len(seen) == 10 and all(seen)
    assert reg.history[0].train_loss > base.history[0].train_loss


def test_load_weights_accepts_checkpoint_and_state_dict(reference, tmp_path):
    model, _, out = reference
    a = load_weights(make_model(7), out / "checkpoint.pt")
    assert_same_state(a, model)
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, tmp_path / "ddp.pt")
    assert_same_state(load_weights(make_model(8), tmp_path / "ddp.pt"), model)


def test_load_weights_wrong_shape_names_the_key(reference):
    _, _, out = reference
    wrong = nn.Sequential(nn.Linear(DIM, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))
    before = state_of(wrong)
    with pytest.raises(CheckpointError, match=r"4\.weight is \(4, 32\) in the file but \(10, 32\)") as info:
        load_weights(wrong, out / "checkpoint.pt")
    assert "--model" in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in wrong.state_dict().items())  # nothing half-loaded
    with pytest.raises(CheckpointError, match="missing keys: 5.weight"):
        load_weights(nn.Sequential(*make_model(), nn.Linear(CLASSES, 2)), out / "checkpoint.pt")


def test_truncated_checkpoint_is_a_checkpoint_error(reference, tmp_path):
    _, _, out = reference
    data = (out / "checkpoint.pt").read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="truncated"):
        load_weights(make_model(), bad)


def test_save_checkpoint_then_load(tmp_path):
    model = make_model()
    path = save_checkpoint(tmp_path / "c.pt", model, epoch=2, step=5, history=[], config=CONFIG)
    ck = load_checkpoint(path)
    assert (ck["epoch"], ck["step"], ck["config"]["seed"]) == (2, 5, 3)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a layerwise training checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


def test_bad_config_and_unavailable_cuda(splits):
    with pytest.raises(LayerwiseError, match="optimizer"):
        train(make_model(), splits, TrainConfig(optimizer="rmsprop"))  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        with pytest.raises(LayerwiseError, match="CUDA is not available"):
            train(make_model(), splits, TrainConfig(epochs=1, device="cuda"))


def test_epoch_batches_are_deterministic_and_shard_the_global_batch():
    single = epoch_batches(10, 4, seed=1, epoch=2)
    assert single == epoch_batches(10, 4, seed=1, epoch=2) != epoch_batches(10, 4, seed=1, epoch=3)
    assert sorted(i for b in single for i in b) == list(range(10)) and [len(b) for b in single] == [4, 4, 2]
    r0, r1 = (epoch_batches(10, 4, seed=1, epoch=2, rank=r, world_size=2) for r in (0, 1))
    assert [len(b) for b in r0] == [len(b) for b in r1] == [2, 2, 1]
    assert sorted(r0[0] + r1[0]) == sorted(single[0])  # rank shards of a global batch = the single-process batch


KILL_SCRIPT = """
import os, signal, sys
import torch
sys.path.insert(0, {tests!r})
from test_train import make_splits, make_model, CONFIG
from layerwise.train import train

out, where, epoch_or_write, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(1)  # as in the test process, so both compute bit-identical results


def die():
    os.kill(os.getpid(), signal.SIGKILL)  # no handler, no finally, no flush: as `kill -9`


progress = None
if where == "batch":  # before batch k of epoch call e
    def progress(iterable, total=None, desc=None, leave=False, calls=[0]):
        call, calls[0] = calls[0], calls[0] + 1
        for i, item in enumerate(iterable):
            if call == epoch_or_write and i == int(k):
                die()
            yield item
else:  # during checkpoint write number n (1-based): halfway through the bytes, before or after the rename
    n, writes = epoch_or_write, [0]
    real_fdopen, real_replace = os.fdopen, os.replace

    class HalfThenDie:
        def __init__(self, f):
            self.f = f
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.f.__exit__(*exc)
        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            os.fsync(self.f.fileno())
            die()

    def fdopen(fd, *args, **kw):
        f = real_fdopen(fd, *args, **kw)
        if "w" in (args[0] if args else kw.get("mode", "")):
            writes[0] += 1
            if writes[0] == n and k == "mid-write":
                return HalfThenDie(f)
        return f

    def replace(src, dst):
        if writes[0] == n and k == "before-rename":
            die()
        real_replace(src, dst)
        if writes[0] == n and k == "after-rename":
            die()

    os.fdopen, os.replace = fdopen, replace
train(make_model(0), make_splits(), CONFIG, out_dir=out, progress=progress)
print("not killed")
"""


@pytest.mark.slow
@pytest.mark.parametrize("where,n,k,on_disk", [
    ("batch", 2, "0", (2, True)),              # between epochs: epoch 2's checkpoint is on disk
    ("batch", 1, "4", (1, True)),              # mid-epoch: only epoch 1's checkpoint
    ("write", 2, "mid-write", (1, False)),     # half of epoch 2's checkpoint written to the temporary file
    ("write", 2, "before-rename", (1, False)),  # epoch 2's file complete, not yet renamed over epoch 1's
    ("write", 2, "after-rename", (2, True)),   # renamed, killed before save_checkpoint returned
    ("write", 1, "mid-write", (None, False)),  # during the very first write: there is nothing to resume
], ids=["between-epochs", "mid-epoch", "during-write", "before-rename", "after-rename", "first-write"])
def test_sigkill_then_resume_is_exact(where, n, k, on_disk, reference, splits, tmp_path):
    """SIGKILL at several points of a run, then resume in this process: the same weights (torch.equal)
    as the uninterrupted run; the checkpoint on disk is always a complete earlier one."""
    ref_model, ref_result, _ = reference
    script = tmp_path / "kill_script.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT.format(tests=str(Path(__file__).parent))))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(out), where, str(n), k], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr[-3000:]
    epochs_on_disk, clean = on_disk
    leftovers = list(out.glob(".checkpoint.pt.*.tmp"))
    assert len(leftovers) == (0 if clean else 1)
    resumed = make_model(99)
    if epochs_on_disk is None:
        assert not (out / "checkpoint.pt").exists()
        with pytest.raises(LayerwiseError, match="cannot resume"):
            train(resumed, splits, CONFIG, out_dir=out, resume=True)
        resumed = make_model(0)  # start afresh, as the message says: the same initial model as the killed run
        result = train(resumed, splits, CONFIG, out_dir=out)
    else:
        ck = load_checkpoint(out / "checkpoint.pt")
        assert (ck["epoch"], ck["step"]) == (epochs_on_disk, 0)
        result = train(resumed, splits, CONFIG, out_dir=out, resume=True)
    assert not result.interrupted and result.epochs_completed == 4
    assert_same_state(resumed, ref_model)
    assert [(r.train_loss, r.val_acc, r.lr) for r in result.history] == \
        [(r.train_loss, r.val_acc, r.lr) for r in ref_result.history]
    assert not list(out.glob(".checkpoint.pt.*.tmp"))  # the stale temporary file was removed


DDP_SCRIPT = """
import os, sys
import torch
from torch import nn
sys.path.insert(0, {tests!r})
from test_train import make_splits, make_model, DIM, CLASSES
from layerwise.train import TrainConfig, train

out = sys.argv[1]
rank = int(os.environ["RANK"])
splits = make_splits()
torch.manual_seed(rank)  # ranks start from different weights: DDP must broadcast rank 0's
plain = nn.Sequential(nn.Linear(DIM, 16), nn.ReLU(), nn.Linear(16, CLASSES))
init = {{k: v.clone() for k, v in plain.state_dict().items()}}
config = TrainConfig(epochs=2, batch_size=32, optimizer="sgd", lr=0.05, schedule="none", seed=1)
res = train(plain, splits, config, out_dir=os.path.join(out, "plain"))
bn = make_model(rank, dropout=0.0)
res_bn = train(bn, splits, config, out_dir=os.path.join(out, "bn"))
torch.save({{"init": init, "plain": plain.state_dict(), "bn": bn.state_dict(), "world": res.world_size,
            "val_acc": res.final_val_acc, "bn_val_acc": res_bn.final_val_acc}}, os.path.join(out, f"rank{{rank}}.pt"))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_cpu_processes(splits, tmp_path):
    script = tmp_path / "ddp_script.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(tests=str(Path(__file__).parent))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2
    for part in ("plain", "bn"):  # identical on both ranks, BatchNorm buffers included
        for k in r0[part]:
            assert torch.equal(r0[part][k], r1[part][k]), f"{part}.{k} differs between ranks"
    assert not torch.equal(r0["plain"]["0.weight"], r0["init"]["0.weight"])
    assert r0["val_acc"] == r1["val_acc"] >= 0.9
    ck = torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 2 and ck["world_size"] == 2
    # same global batches as one process: the DDP result matches a single-process run closely
    torch.manual_seed(0)
    single = nn.Sequential(nn.Linear(DIM, 16), nn.ReLU(), nn.Linear(16, CLASSES))
    train(single, splits, TrainConfig(epochs=2, batch_size=32, optimizer="sgd", lr=0.05, schedule="none", seed=1))
    for k, v in single.state_dict().items():
        assert torch.allclose(v, r0["plain"][k], atol=1e-5), k


def test_residual_training_options_reach_the_model_or_name_the_model_that_lacks_them(tmp_path, capsys):
    from layerwise.cli import main
    from layerwise.experiments.train_run import _model_kwargs
    import argparse
    args = argparse.Namespace(drop_path=0.2, drop_path_schedule="constant", zero_init_residual=True)
    assert _model_kwargs(args) == {"drop_path": 0.2, "drop_path_schedule": "constant", "zero_init_residual": True}
    assert _model_kwargs(argparse.Namespace(drop_path=0.0, drop_path_schedule=None, zero_init_residual=False)) is None
    rc = main(["train", "--model", "tiny-cnn", "--dataset", "digits", "--epochs", "1", "--zero-init-residual",
               "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "does not take option 'zero_init_residual'" in err[0]
