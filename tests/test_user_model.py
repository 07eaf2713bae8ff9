"""--model path/to/file.py:factory: a user's own model on the command line."""

from __future__ import annotations

import json
import textwrap

import pytest

from layerwise.cli import main
from layerwise.errors import LayerwiseError
from layerwise.models import build_model

MODEL_FILE = textwrap.dedent('''
    import torch
    from torch import nn

    class InvertedResidual(nn.Module):
        """A torchvision-style MobileNetV2 block the zoo does not have."""
        def __init__(self, c, expand=2):
            super().__init__()
            self.use_res_connect = True
            h = c * expand
            self.conv = nn.Sequential(nn.Conv2d(c, h, 1), nn.ReLU6(), nn.Conv2d(h, h, 3, padding=1, groups=h),
                                      nn.ReLU6(), nn.Conv2d(h, c, 1))
        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    def build(input_shape, num_classes):
        c = input_shape[0]
        return nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), InvertedResidual(8), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(8, num_classes))

    def no_args():
        return build((1, 8, 8), 10)

    def not_a_model(input_shape, num_classes):
        return "oops"
''')


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(MODEL_FILE)
    return path


def test_factory_gets_the_shape_and_classes_it_asks_for(model_file):
    m = build_model(f"{model_file}:build", (1, 8, 8), 7)
    assert m[-1].out_features == 7 and m[0].in_channels == 1
    assert build_model(f"{model_file}:no_args", (1, 8, 8), 10)[-1].out_features == 10


@pytest.mark.parametrize("suffix, words", [
    (":missing", "has no callable 'missing'"),
    (":not_a_model", "not a torch.nn.Module"),
])
def test_bad_factories_name_the_problem(model_file, suffix, words):
    with pytest.raises(LayerwiseError, match=words):
        build_model(f"{model_file}{suffix}", (1, 8, 8), 10)


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(LayerwiseError, match="no such file"):
        build_model(f"{tmp_path}/nope.py:build", (1, 8, 8), 10)


def test_profile_runs_a_users_model_and_reports_peak_activation_bytes(model_file, tmp_path, capsys):
    out = tmp_path / "prof"
    rc = main(["profile", "--model", f"{model_file}:build", "--dataset", "digits", "--out", str(out),
               "--latency-n", "3", "--warmup", "1", "--batched", "2", "--threads", "1"])
    text = capsys.readouterr().out
    assert rc == 0, text
    res = json.loads((out / "results.json").read_text())
    act = res["variants"][0]["extra"]["activation_memory"]
    # digits 1x8x8: input 256 B; conv 8x8x8 = 2048 B; the block's expanded 16x8x8 tensors = 4096 B each.
    # While the depthwise conv runs: x (kept for the residual add, 2048) + its input (4096) + output (4096)
    assert act["exact"] and act["peak_bytes"] == 2048 + 4096 + 4096
    assert f"peak activations {act['peak_bytes']:,} bytes" in text and "process memory" in text
