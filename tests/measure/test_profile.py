import torch
import torch.nn as nn

from layerwise.measure import count_macs, count_params, profile_model
from layerwise.results import Results, env_info, validate


def test_profile_model_fills_a_valid_variant():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    x = torch.randn(1, 1, 8, 8)
    before = torch.get_num_threads()
    p = profile_model(model, x, threads=1, n=10, warmup=2, batched=4, energy_window_s=0.05)
    assert torch.get_num_threads() == before
    assert p.params == count_params(model)
    assert p.macs.total == count_macs(model, x).total == 4 * 64 * 9 + 256 * 10
    assert (p.latency.batch, p.latency_batched.batch) == (1, 4)
    assert p.latency.threads == p.latency_batched.threads == 1
    fields = p.to_variant_fields()
    assert fields["macs_executed"] == fields["macs"]
    assert fields["size_bytes"] == p.size.bytes and fields["peak_mem_bytes"] == p.memory.bytes
    assert fields["extra"]["latency_batched_ms"]["batch"] == 4
    assert fields["extra"]["macs_per_module"]["0"] == 4 * 64 * 9
    variant = {"name": "dense", "accuracy": None, **fields}
    variant["extra"]["accuracy"] = "not evaluated in this test"
    doc = Results(method="profile", model="tiny", dataset="none", env=env_info(threads=1)).to_dict()
    doc["variants"] = [variant]
    validate(doc)
