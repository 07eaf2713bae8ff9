import os

import pytest
import torch
import torch.nn as nn

from layerwise.errors import LayerwiseError
from layerwise.measure import Size, artifact_size, count_params


def test_count_params_shared_counted_once():
    lin = nn.Linear(4, 3)  # 4*3 + 3 = 15
    assert count_params(nn.Sequential(lin, nn.ReLU(), lin)) == 15
    emb, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    head.weight = emb.weight  # tied weights: 40 once
    assert count_params(nn.ModuleList([emb, head])) == 40


def test_count_params_trainable_only():
    m = nn.Linear(4, 3)
    m.bias.requires_grad_(False)
    assert count_params(m) == 15
    assert count_params(m, trainable_only=True) == 12


def test_artifact_size_is_saved_file_size(tmp_path):
    m = nn.Linear(100, 50)
    path = tmp_path / "m.pt"
    s = artifact_size(m, path)
    assert isinstance(s, Size)
    assert s.bytes == os.path.getsize(path) and s.path == str(path)
    assert s.bytes > 100 * 50 * 4  # at least the float32 weights
    assert artifact_size(path).bytes == s.bytes  # an existing file, measured as it is
    assert artifact_size(m).bytes == s.bytes  # temp file, removed afterwards
    assert "torch.save" in s.source and s.to_json() == {"bytes": s.bytes, "source": s.source}


def test_artifact_size_grows_with_params():
    small, big = artifact_size(nn.Linear(10, 10)).bytes, artifact_size(nn.Linear(100, 100)).bytes
    # 10100 - 110 more float32 parameters; the zip pads records to 64-byte alignment
    assert abs((big - small) - (10_100 - 110) * 4) <= 128


def test_artifact_size_missing_file(tmp_path):
    with pytest.raises(LayerwiseError, match="no file"):
        artifact_size(tmp_path / "nope.pt")
