"""lwac.apply and ela.apply on models the zoo does not have, through DataLoaders (issue 12).

The LWAC model is built from MobileNetV2 inverted residuals written the torchvision way
(``use_res_connect``, ``x + self.conv(x)``); nothing in it was written for layerwise. The ELA
model is a small ResNet-like CNN whose stages are handed over as lists of blocks.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from layerwise import ela, lwac
from layerwise.errors import DataError, LayerwiseError
from layerwise.models.mrla import LayerAttentionBlock


# ---- a user's model and data ------------------------------------------------------------------

class InvertedResidual(nn.Module):
    """MobileNetV2's block as torchvision writes it."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        self.use_res_connect = stride == 1 and inp == oup
        hidden = inp * expand_ratio
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup))

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TinyMobileNet(nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.features = nn.Sequential(InvertedResidual(8, 8, 1, 2), InvertedResidual(8, 16, 2, 2),
                                      InvertedResidual(16, 16, 1, 2), InvertedResidual(16, 16, 1, 2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes))

    def forward(self, x):
        return self.head(self.features(self.stem(x)))


def synthetic(n: int, seed: int, classes: int = 4):
    """Learnable: each class is a fixed random 3x8x8 pattern plus noise."""
    g = torch.Generator().manual_seed(1234)
    patterns = torch.randn(classes, 3, 8, 8, generator=g)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    return patterns[y] + 0.8 * torch.randn(n, 3, 8, 8, generator=g), y


def fit(model: nn.Module, x, y, epochs: int = 3) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    return model.eval()


class DictSet(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self.y[i]}


class Stream(IterableDataset):
    """An iterable dataset: no __len__, no indexing; counts the samples it has handed out."""

    def __init__(self, x, y):
        self.x, self.y, self.served = x, y, 0

    def __iter__(self):
        for i in range(len(self.x)):
            self.served += 1
            yield self.x[i], self.y[i]


@pytest.fixture(scope="module")
def mobilenet_and_data():
    torch.manual_seed(0)
    xtr, ytr = synthetic(384, 1)
    model = fit(TinyMobileNet(), xtr, ytr)
    return model, synthetic(96, 2), synthetic(96, 3)


FAST = dict(grid=5, latency_n=3, latency_inputs=8)


def _counters(blocks):
    calls = {name: 0 for name in blocks}
    handles = []
    for name, block in blocks.items():
        def hook(mod, args, out, name=name):
            calls[name] += 1
        handles.append(block.register_forward_hook(hook))
    return calls, handles


# ---- LWAC ---------------------------------------------------------------------------------------

def test_lwac_apply_bypasses_torchvision_style_blocks_for_real(mobilenet_and_data):
    model, (xv, yv), (xt, yt) = mobilenet_and_data
    before = copy.deepcopy(model.state_dict())
    calib = DataLoader(TensorDataset(xv, yv), batch_size=32, shuffle=True)
    lw, report = lwac.apply(model, calib, val_loader=DataLoader(TensorDataset(xt, yt), batch_size=48),
                            policy="neural", **FAST)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the user's model is untouched

    # which blocks are bypassable, and the real reason for the one that is not
    assert report.bypassable == ("features.0", "features.2", "features.3")
    assert list(report.not_bypassable) == ["features.1"]
    reason = report.not_bypassable["features.1"]
    assert "no residual add found when traced" in reason and "use_res_connect is False" in reason
    assert "8->16 channels" in reason

    # the automatic choices: lambda from the grid over the lambda range, a measured dense latency
    assert report.lam in report.lam_grid and len(report.lam_grid) == 5
    assert report.lam_range[0] <= report.lam <= report.lam_range[1]
    assert report.dense_ms > 0 and report.calib_samples == 96 and report.val_samples == 96
    dense_acc = (model(xt).argmax(1) == yt).float().mean().item()
    assert report.val_accuracy_before == pytest.approx(dense_acc)
    d = report.to_dict()
    assert d["not_bypassable"]["features.1"] == reason and len(d["sweep"]) == 5

    # bypassed for real: at the top of the lambda range every gate is off; per input, the block's
    # forward hook fires exactly when the ACU says it ran, and never on an input it bypassed
    blocks = {u.name: lw.acus[u.index].unit for u in lw.units}
    calls, handles = _counters(blocks)
    lw.set_lambda(report.lam_range[1])
    try:
        with torch.no_grad():
            for i in range(12):
                ran_before = list(lw.state.executed)
                skipped_before = list(lw.state.bypassed)
                before_calls = dict(calls)
                out = lw(xt[i:i + 1])
                off = [u.name for u in lw.units if lw.state.bypassed[u.index] > skipped_before[u.index]]
                for u in lw.units:
                    ran = lw.state.executed[u.index] - ran_before[u.index]
                    assert calls[u.name] - before_calls[u.name] == ran
                    if u.name in off:
                        assert calls[u.name] == before_calls[u.name]  # zero calls for this input
                # the output is the user's model with the bypassed blocks replaced by the identity
                expected = copy.deepcopy(model)
                for name in off:
                    expected.features[int(name.split(".")[1])] = nn.Identity()
                assert torch.allclose(out, expected(xt[i:i + 1]), atol=1e-5)
                assert off, "at the top of the lambda range every bypassable gate is off"
                assert "features.1" not in off
    finally:
        for h in handles:
            h.remove()
    assert calls["features.2"] == 0 and calls["features.3"] == 0 and calls["features.1"] == 12


def test_lwac_apply_streams_dict_and_iterable_loaders(mobilenet_and_data):
    model, (xv, yv), _ = mobilenet_and_data
    with pytest.raises(DataError, match="input_key"):
        lwac.apply(model, DataLoader(DictSet(xv, yv), batch_size=32), policy="heuristic", **FAST)
    lw, report = lwac.apply(model, DataLoader(DictSet(xv, yv), batch_size=32), input_key="image",
                            target_key="label", policy="heuristic", **FAST)
    assert report.policy == "heuristic" and report.val_split == "calib_loader" and report.calib_samples == 96
    assert report.lam in report.lam_grid
    stream = Stream(xv, yv)  # no len, no indexing: calibration can only stream it
    lw, report = lwac.apply(model, DataLoader(stream, batch_size=16), policy="neural", **FAST)
    assert report.calib_samples == 96 and stream.served >= 96 * 5  # several streamed passes


def test_lwac_apply_refuses_bad_options(mobilenet_and_data):
    model, (xv, yv), _ = mobilenet_and_data
    with pytest.raises(LayerwiseError, match="policy must be one of"):
        lwac.apply(model, DataLoader(TensorDataset(xv, yv), batch_size=32), policy="learned")
    with pytest.raises(LayerwiseError, match="grid needs at least 2"):
        lwac.apply(model, DataLoader(TensorDataset(xv, yv), batch_size=32), policy="heuristic", grid=1,
                   latency_n=3, latency_inputs=4)


# ---- ELA ----------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, written as torchvision writes it."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16), BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32), BasicBlock(32, 32))
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_ela_apply_trains_a_user_resnet_and_never_calls_a_skipped_attention():
    torch.manual_seed(0)
    model = TinyResNet()
    (xtr, ytr), (xv, yv) = synthetic(256, 4), synthetic(64, 5)
    train_loader = DataLoader(DictSet(xtr, ytr), batch_size=32, shuffle=True)
    val_loader = DataLoader(DictSet(xv, yv), batch_size=64)
    net, report = ela.apply(model, train_loader, val_loader=val_loader, input_key="image", target_key="label",
                            stages=[list(model.layer1), ["layer2.0", "layer2.1", "layer2.2"]], epochs=3,
                            config=ela.ElaConfig(windows=((1, 2),), strategy="fixed", fixed_counts=(1,)))
    assert not any(isinstance(m, LayerAttentionBlock) for m in model.modules())  # a copy was trained
    assert report.attention_layers == ("layer1.0", "layer1.1", "layer1.2", "layer2.0", "layer2.1", "layer2.2")
    assert report.epochs == 3 and len(report.history) == 3 and report.windows == ((1, 2),)
    assert report.val_split == "val_loader" and 0.0 <= report.val_accuracy_after <= 1.0

    # one layer removed at the end of the window: the candidate with the lowest window-mean KL
    # (a stage's first layer has no KL and is never a candidate)
    assert len(report.skipped) == 1
    skip = report.skipped[0]
    event = report.events[0]
    assert skip.window == (1, 2) and skip.epoch == 2
    assert set(event["kl"]) == {"layer1.1", "layer1.2", "layer2.1", "layer2.2"}
    used = event["kl_uniform"] if skip.kl_norm == "uniform" else event["kl"]
    assert skip.name == min(used, key=used.get) and skip.kl == event["kl"][skip.name]
    assert report.to_dict()["skipped"][0]["name"] == skip.name

    # the skipped layer's attention is never called; the others are
    calls = {}
    for name in report.attention_layers:
        att = net.get_submodule(name).attention
        calls[name] = 0
        att.register_forward_hook(lambda m, a, o, name=name: calls.__setitem__(name, calls[name] + 1))
    net.eval()
    with torch.no_grad():
        logits = net(xv[:8])
    assert logits.shape == (8, 4)
    assert calls[skip.name] == 0
    assert all(calls[n] == 1 for n in report.attention_layers if n != skip.name)
    assert net.get_submodule(skip.name).skip_attention  # saved with the weights (a buffer)


def test_attached_layer_attention_computes_what_the_zoo_mrla_resnet_computes():
    """The zoo's resnet20-mrla-b = its plain bottleneck ResNet + the attention attached to each
    stage's blocks, with the same weights: outputs equal (the stage's keys and values shared)."""
    from layerwise.models import build_model
    torch.manual_seed(0)
    zoo = build_model("resnet20-mrla-b", (3, 16, 16), 10).eval()
    plain = build_model("resnet20", (3, 16, 16), 10).eval()
    x = torch.randn(2, 3, 16, 16)
    net = ela.attach_layer_attention(plain, ["layer1", "layer2", "layer3"], x)
    mapped = {}
    for key, value in zoo.state_dict().items():
        parts = key.split(".")
        if parts[0].startswith("layer") and not parts[2].startswith("attention"):
            key = ".".join(parts[:2] + ["block"] + parts[2:])
        mapped[key] = value
    net.load_state_dict(mapped)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), zoo(x), atol=1e-5)


def test_ela_apply_names_bad_stages():
    model = TinyResNet()
    loader = DataLoader(TensorDataset(*synthetic(32, 6)), batch_size=16)
    with pytest.raises(LayerwiseError, match="no submodule 'layer9.0'"):
        ela.apply(model, loader, stages=[["layer9.0"]], epochs=1)
    with pytest.raises(LayerwiseError, match="start a new stage where the shape changes"):
        ela.apply(model, loader, stages=[list(model.layer1) + list(model.layer2)], epochs=1)


# ---- docs ---------------------------------------------------------------------------------------

def test_docs_api_lwac_and_ela_examples_run(capsys):
    """The python blocks of docs/api.md's shared setup, LWAC and ELA sections run as written."""
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    code = []
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        if part.splitlines()[0].strip() in ("A model of your own", "LWAC", "ELA"):
            code += re.findall(r"```python\n(.*?)```", part, flags=re.S)
    assert len(code) >= 3
    exec(compile("\n".join(code), "docs/api.md", "exec"), {"__name__": "docs_api"})
    out = capsys.readouterr().out
    assert "not bypassable: {'features.2': 'no residual add found when traced (use_res_connect is False" in out
    assert "features.3 ran 0 times for 8 inputs with its gate off" in out
    assert "attention layers: ('layer1.0'" in out and "val accuracy" in out


def test_lwac_finds_residual_blocks_whose_class_name_it_does_not_know():
    """``out = self.conv(x) + x`` in a class named nothing layerwise knows: found by tracing, with
    the instances whose add is switched off reported as not bypassable."""

    class MyUnit(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.skip = cin == cout
            self.conv = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())

        def forward(self, x):
            return self.conv(x) + x if self.skip else self.conv(x)

    torch.manual_seed(0)
    model = nn.Sequential(MyUnit(3, 8), MyUnit(8, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).eval()
    x = torch.randn(1, 3, 8, 8)
    lw = lwac.attach(model, x, lwac.LWACConfig(policy="heuristic"), latency_n=1)
    assert [(u.name, u.bypassable) for u in lw.units] == [("0", False), ("1", True)]
    assert "skip is False: the block changes shape 3->8 channels" in lw.units[0].reason
    calls = []
    lw.acus[1].unit.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad(), lw.forced({1: True}):
        out = lw(x)
    assert calls == [] and torch.allclose(out, model[4](model[3](model[2](model[0](x)))))


def test_ela_apply_on_the_inverted_residual_model(mobilenet_and_data):
    """ELA on the same torchvision-style MobileNet that LWAC bypasses: the stage is its two 16-channel
    blocks (the blocks of a stage must keep one shape); the removed layer's attention never runs."""
    model, (xc, yc), (xv, yv) = mobilenet_and_data
    train_loader = DataLoader(TensorDataset(xc, yc), batch_size=32, shuffle=True)
    net, report = ela.apply(model, train_loader, val_loader=DataLoader(TensorDataset(xv, yv), batch_size=48),
                            stages=[["features.2", "features.3"]], epochs=2,
                            config=ela.ElaConfig(windows=((1, 1),), strategy="fixed", fixed_counts=(1,)))
    assert report.attention_layers == ("features.2", "features.3")
    assert [s.name for s in report.skipped] == ["features.3"]     # the only candidate: a stage's first layer has no KL
    calls = {"features.2": 0, "features.3": 0}
    for name in calls:
        net.get_submodule(name).attention.register_forward_hook(
            lambda m, a, o, name=name: calls.__setitem__(name, calls[name] + 1))
    net.eval()
    with torch.no_grad():
        assert net(xv[:4]).shape == (4, 4)
    assert calls == {"features.2": 1, "features.3": 0}
