"""``layerwise.unit.apply`` and ``layerwise.adalayer.apply`` on a model the zoo does not have.

The model is written here, the torchvision way (MobileNetV2 inverted-residual blocks with
``self.use_res_connect``), trained for a few epochs on class-dependent 8x8 patterns, and handed to
each method through a DataLoader: a map-style one with tuple batches, one with dict batches read
through ``input_key`` / ``target_key``, and an iterable-style one.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import layerwise.adalayer as ada
import layerwise.unit as unit
from layerwise.errors import LayerwiseError

CLASSES, SIDE = 4, 8


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block: expand 1x1, depthwise 3x3, project 1x1, residual when shapes keep."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup))

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TinyMobileNet(nn.Module):
    def __init__(self, classes: int = CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(inplace=True)),
            InvertedResidual(8, 8, 1, 2), InvertedResidual(8, 16, 2, 2), InvertedResidual(16, 16, 1, 2))
        self.classifier = nn.Linear(16, classes)

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def _patterns(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c: a fixed random 8x8 template of class c (the same for every split), plus noise."""
    templates = torch.randn(CLASSES, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = templates[y] + 0.8 * torch.randn(n, 1, SIDE, SIDE, generator=g)
    return x, y


class DictSet(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixels": self.x[i], "label": self.y[i]}


class Stream(IterableDataset):
    """An iterable-style dataset (no __len__, no indexing): samples one at a time."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        for i in range(len(self.y)):
            yield self.x[i], self.y[i]


@pytest.fixture(scope="module")
def splits():
    return {"train": _patterns(256, 0), "calib": _patterns(96, 1), "val": _patterns(96, 2)}


@pytest.fixture(scope="module")
def trained(splits):
    torch.manual_seed(0)
    model = TinyMobileNet()
    x, y = splits["train"]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        for xb, yb in loader:
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model.eval()


def _loaders(kind: str, splits, batch_size: int = 32):
    """(calib, val, keys) of one loader kind: tuple (map-style), dict (map-style), iterable."""
    def make(split):
        x, y = splits[split]
        if kind == "tuple":
            return DataLoader(TensorDataset(x, y), batch_size=batch_size)
        if kind == "dict":
            return DataLoader(DictSet(x, y), batch_size=batch_size)
        return DataLoader(Stream(x, y), batch_size=batch_size)
    keys = {"input_key": "pixels", "target_key": "label"} if kind == "dict" else {}
    return make("calib"), make("val"), keys


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------- UnIT

@pytest.mark.parametrize("kind", ["tuple", "dict", "iterable"])
def test_unit_apply_skips_macs_on_a_user_model(kind, splits, trained):
    calib, val, keys = _loaders(kind, splits)
    before = _state(trained)
    module, report = unit.apply(trained, calib, val_loader=val, sweep_percentiles=(10, 30, 60), max_drop_pt=2.0,
                                **keys)
    # the user's model is untouched; the module is a converted copy
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    assert not unit.unit_layers(trained) and unit.unit_layers(module)
    # every Conv2d / Linear converted, each with a positive threshold
    n_layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in trained.modules())
    assert len(report.thresholds) == n_layers
    assert all(min(t) > 0 for t in report.thresholds.values())
    # MACs: recount independently on the val split with the module's own counters
    xv, yv = splits["val"]
    unit.reset_counts(module)
    with torch.no_grad():
        module(xv)
    counts = unit.total_counts(module)
    assert report.macs_total == counts.total and report.macs_executed == counts.executed
    assert 0 < report.macs_executed < report.macs_total
    assert report.skipped_fraction > 0.05
    # the choice obeys its rule: the largest grid percentile within 2 pt of dense on val
    assert report.choice is not None and report.percentile in (10, 30, 60)
    assert report.val_accuracy_before == pytest.approx(_accuracy(trained, xv, yv))
    assert report.val_accuracy_after == pytest.approx(_accuracy(module, xv, yv))
    ok = [p for p, a in report.choice.val_curve if a >= report.val_accuracy_before - 0.02 - 1e-12]
    assert report.percentile == (max(ok) if ok else 10)
    d = report.to_dict()
    assert d["percentile"] == report.percentile and d["percentile_choice"]["split"] == "val"


def test_unit_apply_fixed_percentile_without_targets(splits, trained):
    x, _ = splits["calib"]
    module, report = unit.apply(trained, DataLoader(x, batch_size=64), percentile=20)
    assert report.choice is None and report.percentile == 20 and report.val_accuracy_after is None
    assert report.val_source == "calib_loader" and report.samples == len(x)
    with pytest.raises(LayerwiseError, match="val_loader"):
        unit.apply(trained, DataLoader(x, batch_size=64))          # auto needs labels
    with pytest.raises(LayerwiseError, match="input_key"):
        calib, _, _ = _loaders("dict", splits)
        unit.apply(trained, calib, percentile=20)                  # dict batches need keys
    with pytest.raises(LayerwiseError, match="one-shot iterator"):
        unit.apply(trained, (b for b in DataLoader(x, batch_size=64)), percentile=20)


# ---------------------------------------------------------------------------------- AdaLayerNet

#: onnxruntime vs the PyTorch module. Weights-only QDQ ("float" activations): the int8 codes ARE the
#: module's, so only float32 rounding (BatchNorm folded into the convolutions) separates them:
#: max |diff| <= 1e-4 * (1 + max |logit|). int8 activations add uint8 rounding of every Conv/Gemm
#: input and output: max |diff| <= 0.15 * (1 + max |logit|) and the same top-1 on >= 90 % of inputs.
WEIGHTS_ONLY_TOL, INT8_TOL, INT8_TOP1_AGREEMENT = 1e-4, 0.15, 0.90


def _ort_logits(path, x):
    import onnxruntime as ort
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]


@pytest.mark.parametrize("kind", ["tuple", "dict", "iterable"])
def test_adalayer_apply_packs_within_budget_and_reloads_without_the_registry(kind, splits, trained, tmp_path):
    pytest.importorskip("onnxruntime")
    calib, val, keys = _loaders(kind, splits)
    x_train, y_train = splits["train"]
    train = DataLoader(TensorDataset(x_train, y_train), batch_size=64) if kind == "tuple" else None
    before = _state(trained)
    budget = 0.12
    module, report = ada.apply(trained, calib, val_loader=val, budget=budget, train_loader=train, finetune_epochs=1,
                               packed_path=tmp_path / "m.lwpk", onnx_path=tmp_path / "m.onnx", **keys)
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    # the packed file: real bytes on disk, within budget * (dense fp32 torch.save bytes, measured here)
    import io
    buf = io.BytesIO()
    torch.save(trained.state_dict(), buf)
    dense = len(buf.getvalue())
    size = (tmp_path / "m.lwpk").stat().st_size
    assert size == report.packed_bytes <= int(budget * dense)
    assert report.dense_bytes == dense and report.fits
    # per-layer decisions for every Conv2d / Linear, bits in the allowed range
    n_layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in trained.modules())
    assert len(report.layers) == n_layers and all(2 <= b <= 8 for b in report.bits.values())
    # reload WITHOUT the registry: into a fresh module of the same architecture; outputs equal exactly
    with pytest.raises(ada.PackedFileError, match="model="):
        ada.load_packed(tmp_path / "m.lwpk")
    fresh = TinyMobileNet()
    rebuilt = ada.load_packed(tmp_path / "m.lwpk", model=fresh).model
    xv, yv = splits["val"]
    with torch.no_grad():
        assert torch.equal(rebuilt(xv), module(xv))
    assert rebuilt is not fresh
    assert report.val_accuracy_after == pytest.approx(_accuracy(module, xv, yv))
    # the int8 ONNX file runs in onnxruntime, near the module's outputs (INT8_TOL, stated above)
    got = _ort_logits(tmp_path / "m.onnx", xv)
    with torch.no_grad():
        want = module(xv).numpy()
    assert np.abs(got - want).max() <= INT8_TOL * (1 + np.abs(want).max())
    assert (got.argmax(1) == want.argmax(1)).mean() >= INT8_TOP1_AGREEMENT
    assert report.onnx["activations"] == "int8" and report.onnx["size_bytes"] == (tmp_path / "m.onnx").stat().st_size
    assert report.onnx["val_accuracy"] == pytest.approx(float((got.argmax(1) == yv.numpy()).mean()))
    d = report.to_dict()
    assert d["packed_bytes"] == size and "packed" not in d and d["onnx"]["int8_layers"]


def test_adalayer_int8_weights_are_the_packed_codes(splits, trained, tmp_path):
    """Weights-only QDQ: the int8 initializers are the AdaLayerNet codes, so onnxruntime equals the module
    up to float32 rounding, and the file is smaller than the fp32 ONNX export of the same module."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import numpy_helper
    calib, val, _ = _loaders("tuple", splits)
    module, report = ada.apply(trained, calib, budget=0.12)
    xv, _ = splits["val"]
    res = ada.export_onnx_int8(module, xv[:1], tmp_path / "w.onnx", quantized=report.quantized, activations="float",
                               check_input=xv)
    got = _ort_logits(tmp_path / "w.onnx", xv)
    with torch.no_grad():
        want = module(xv).numpy()
    assert np.abs(got - want).max() <= WEIGHTS_ONLY_TOL * (1 + np.abs(want).max())
    assert res.ok and set(res.int8_layers) == set(report.bits)
    # the classifier (no BatchNorm after it): its int8 initializer holds exactly the packed codes
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "w.onnx")).graph.initializer}
    codes = inits["classifier.weight_int8"]
    assert codes.dtype == np.int8
    assert np.array_equal(codes.astype(np.int32), report.quantized["classifier"].codes.numpy())
    fp32 = ada.export_and_check(module, xv[:1], tmp_path / "fp32.onnx")
    assert res.size_bytes < fp32.size_bytes


def test_load_packed_refuses_a_module_that_does_not_fit(splits, trained, tmp_path):
    calib, _, _ = _loaders("tuple", splits)
    _, report = ada.apply(trained, calib, budget=0.12, packed_path=tmp_path / "m.lwpk")
    with pytest.raises(ada.PackedFileError, match="does not fit the TinyMobileNet passed as model="):
        ada.load_packed(tmp_path / "m.lwpk", model=TinyMobileNet(classes=CLASSES + 1))
    with pytest.raises(ada.PackedFileError, match="model= must be a torch.nn.Module"):
        ada.load_packed_bytes(report.packed, model="TinyMobileNet")


# ----------------------------------------------------------------------------------------- docs

def _doc_blocks(sections: tuple[str, ...]) -> str:
    """The ```python blocks of docs/api.md under the ``## <section>`` headings named, in order."""
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    code = []
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        title = part.splitlines()[0].strip()
        if title in sections:
            code += re.findall(r"```python\n(.*?)```", part, flags=re.S)
    assert code, f"docs/api.md has no python block under {sections}"
    return "\n".join(code)


def test_docs_api_unit_and_adalayer_examples_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    code = _doc_blocks(("A model of your own", "UnIT", "AdaLayerNet"))
    exec(compile(code, "docs/api.md", "exec"), {"__name__": "docs_api"})
    out = capsys.readouterr().out
    assert "% skipped" in out and "packed" in out and (tmp_path / "mynet.lwpk").is_file()
    assert (tmp_path / "mynet-int8.onnx").is_file()


def test_adalayer_sensitivity_cache_is_keyed_by_the_data(splits, trained, tmp_path):
    calib, val, _ = _loaders("tuple", splits)
    _, first = ada.apply(trained, calib, budget=0.12, cache_dir=tmp_path)
    _, again = ada.apply(trained, calib, budget=0.12, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("sensitivity-*.json"))) == 1 and again.layers == first.layers
    ada.apply(trained, val, budget=0.12, cache_dir=tmp_path)       # other data: measured again, not served
    assert len(list(tmp_path.glob("sensitivity-*.json"))) == 2


def test_adalayer_int4_weights_where_codes_have_at_most_4_bits(splits, trained, tmp_path):
    """int4=True: layers at <= 4 bits are stored as ONNX INT4 (opset 21) and onnxruntime runs them; the
    outputs still equal the module's within WEIGHTS_ONLY_TOL, and the file is smaller than the int8 one."""
    pytest.importorskip("onnxruntime")
    calib, _, _ = _loaders("tuple", splits)
    module, report = ada.apply(trained, calib, budget=0.12, config=ada.AdaLayerConfig(b_max=4))
    assert max(report.bits.values()) <= 4
    xv, _ = splits["val"]
    kw = dict(quantized=report.quantized, activations="float", check_input=xv)
    r8 = ada.export_onnx_int8(module, xv[:1], tmp_path / "w8.onnx", **kw)
    r4 = ada.export_onnx_int8(module, xv[:1], tmp_path / "w4.onnx", int4=True, **kw)
    assert set(r4.weight_types.values()) == {"int4"} and set(r8.weight_types.values()) == {"int8"}
    got = _ort_logits(tmp_path / "w4.onnx", xv)
    with torch.no_grad():
        want = module(xv).numpy()
    assert np.abs(got - want).max() <= WEIGHTS_ONLY_TOL * (1 + np.abs(want).max())
    n_weights = sum(q.codes.numel() for q in report.quantized.values())
    assert r8.size_bytes - r4.size_bytes >= n_weights // 2 - 64    # half a byte saved per weight
