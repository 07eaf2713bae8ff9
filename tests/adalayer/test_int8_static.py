"""int8-static (the rival a PyTorch user runs): static PTQ of a small trained resnet20 really runs int8
kernels, its saved file is under 0.4 of the dense file, it reloads exactly, and a model FX cannot
trace gives a reason instead of a number."""

import pytest
import torch
from torch import nn
from torch.profiler import profile

from layerwise.adalayer.int8 import (FLOW, load_static_state, pt2e_unavailable, quantized_params,
                                     rebuild_static, static_int8)
from layerwise.data import load_dataset
from layerwise.measure import artifact_size
from layerwise.models import build_model
from layerwise.train import TrainConfig, evaluate, predict, train


@pytest.fixture(scope="module")
def trained_resnet20():
    """resnet20 (CIFAR bottleneck) on the 8x8 digits, trained 2 epochs (a few seconds)."""
    torch.set_num_threads(1)
    data = load_dataset("digits", size=8, channels=1, seed=0)
    torch.manual_seed(0)
    model = build_model("resnet20", data.input_shape, data.num_classes)
    train(model, data, TrainConfig(epochs=2, batch_size=64, optimizer="adam", lr=3e-3, schedule="cosine", seed=0))
    return data, model.eval()


def test_resnet20_static_int8_runs_int8_kernels_small_file_close_accuracy(trained_resnet20, tmp_path):
    data, model = trained_resnet20
    x1 = data.val[0][0].unsqueeze(0)
    res = static_int8(model, data.val, x1, samples=256)
    assert res.model is not None, res.reason
    assert res.flow == FLOW == "fx" and res.calibration_samples == 256
    assert pt2e_unavailable() is None or "torchao" in pt2e_unavailable()
    q = res.model

    # every conv and linear is an int8 module (BatchNorm folded into the convs), none left fp32
    n_layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    assert sum(res.ops["quantized_modules"].values()) == n_layers
    assert res.ops["float_layers"] == []
    assert res.ops["quantized_functions"].get("quantized::add_relu", 0) > 0  # residual adds in int8 too
    # int8 from the input's quantize to the logits' dequantize: the pool -> Flatten -> fc tail included
    assert res.ops["quantized_functions"]["quantize_per_tensor"] == 1 and res.ops["dequantize"] == 1
    w = q.get_submodule("stem.conv").weight()
    assert w.dtype == torch.qint8 and w.qscheme() == torch.per_channel_affine  # per-channel int8 weights

    # it executes int8 kernels and no float convolution at all
    with profile() as prof, torch.no_grad():
        q(x1)
    ops = {e.key for e in prof.key_averages()}
    assert {"quantized::conv2d", "quantized::conv2d_relu", "quantized::linear"} <= ops
    assert not ops & {"aten::conv2d", "aten::convolution", "aten::linear", "aten::addmm"}

    # the shipped file: int8 state_dict under 0.4 of the dense fp32 state_dict; it reloads exactly
    dense = artifact_size(model).bytes
    size = artifact_size(q, path=tmp_path / "int8-static.pt").bytes
    assert size < 0.4 * dense, (size, dense)
    rebuilt = rebuild_static(model, x1, load_static_state(tmp_path / "int8-static.pt"))
    xb = torch.stack([data.test[i][0] for i in range(32)])
    with torch.no_grad():
        assert torch.equal(rebuilt(xb), q(xb))
    assert 0 < quantized_params(q) <= sum(p.numel() for p in model.parameters())

    # test accuracy within a few points of dense, and equal to the mean of its per-image hits
    acc_dense, acc_q = evaluate(model, data.test).accuracy, evaluate(rebuilt, data.test).accuracy
    assert acc_dense > 0.5 and abs(acc_q - acc_dense) <= 0.03, (acc_dense, acc_q)
    pred = predict(rebuilt, data.test)
    assert int((pred.predicted == pred.targets).sum()) / len(data.test) == acc_q


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it symbolically."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:
            y = y.relu()
        return self.fc(y.flatten(1))


def test_untraceable_model_gives_the_reason_not_a_model(trained_resnet20):
    data, _ = trained_resnet20
    res = static_int8(Branchy().eval(), data.val, data.val[0][0].unsqueeze(0), samples=64)
    assert res.model is None
    assert res.reason.startswith("FX cannot trace the model") and res.calibration_samples == 64
    j = res.to_json()
    assert j["reason"] == res.reason and j["calibration_split"] == "val" and j["flow"] == "fx"
