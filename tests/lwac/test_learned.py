"""Gates that learn per input: trained jointly with the network (straight-through hard gates,
eq. 5 in its target-rate form), they must take different paths on different inputs, and the
training forward must compute exactly what the deployed model computes."""

import pytest
import torch

from layerwise.data import load_dataset
from layerwise.lwac import FineTuneConfig, LWACConfig, LWACError, attach, train_learned_gates
from layerwise.lwac.calibrate import _scores
from layerwise.models import build_model


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    data = load_dataset("digits")
    train = torch.utils.data.Subset(data.train, range(256))
    x1 = data.train[0][0].unsqueeze(0)
    base = build_model("resnet20", tuple(x1.shape[1:]), data.num_classes, drop_path=0.2,
                       drop_path_schedule="constant", zero_init_residual=True).eval()
    lw = attach(base, x1, LWACConfig(policy="learned"), latency_n=1)
    # the base frozen here (its BatchNorm statistics are those of an untrained net); the command
    # trains both (freeze_base=False)
    info = train_learned_gates(lw, train, FineTuneConfig(epochs=2, batch_size=32, lr=0.05, target=0.5, delta=2.0,
                                                         freeze_base=True))
    xs = torch.stack([data.test[i][0] for i in range(120)])
    return lw, info, xs


def _paths(lw, xs):
    paths = []
    with torch.no_grad():
        for k in range(len(xs)):
            lw.reset_counts()
            lw(xs[k:k + 1])  # the deployed batch-1 path
            paths.append(tuple(lw.state.bypassed))
    return paths


def test_learned_gates_take_different_paths_on_different_inputs(trained):
    lw, info, xs = trained
    assert lw.state.lam == pytest.approx(info["lam_train"]) and info["lam_train"] > 0
    assert len(info["history"]) == 2 and all(h["task_loss"] > 0 for h in info["history"])
    paths = _paths(lw, xs)
    assert len(set(paths)) > 1, "every input took the same path: the gates do not adapt"
    # per unit: at least one gate is open for some inputs and closed for others
    per_unit = [{p[i] for p in paths} for i in range(len(lw.units))]
    assert any(s == {0, 1} for s in per_unit), per_unit
    # its relevance is a probability, so its lambda range starts at >= 0
    r = _scores(lw, xs, {})
    assert all(0.0 <= float(v.min()) and float(v.max()) <= 1.0 for v in r.values())


def test_training_forward_takes_the_deployed_paths(trained):
    """Straight-through hard gates: with the network in eval mode, the training forward (gates
    logged for eq. 5) gives the deployed outputs exactly, sample by sample."""
    lw, _, xs = trained
    x = xs[:16]
    st = lw.state
    st.soft_train, st.alpha_log = True, []
    try:
        with torch.no_grad():
            train_out = lw.model(x)
        gates = torch.stack([a for _, a in sorted(st.alpha_log, key=lambda t: t[0])], dim=1)
    finally:
        st.soft_train, st.alpha_log = False, []
    assert torch.all((gates.abs() < 1e-6) | ((gates - 1).abs() < 1e-6))  # hard in the forward (ST: 1 + p - p)
    with torch.no_grad():
        deployed = torch.cat([lw(x[k:k + 1]) for k in range(len(x))])
    torch.testing.assert_close(train_out, deployed, rtol=1e-4, atol=1e-4)


def test_gate_training_refuses_bad_settings(trained):
    lw, _, _ = trained
    with pytest.raises(LWACError, match="target rate"):
        FineTuneConfig(target=1.5).validate()
    heur = attach(build_model("resnet20", (1, 8, 8), 10).eval(), torch.zeros(1, 1, 8, 8),
                  LWACConfig(policy="heuristic"), latency_n=1)
    with pytest.raises(LWACError, match="policy='learned'"):
        train_learned_gates(heur, [(torch.zeros(1, 8, 8), 0)], FineTuneConfig())
