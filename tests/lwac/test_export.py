"""Export with the control flow kept: torch.cond under torch.export. Two inputs that take
different paths through the eager model both match it through the exported program."""

import torch

from layerwise.lwac import LWACConfig, attach
from layerwise.lwac.controller import summarise
from layerwise.lwac.export import count_conds, export


def test_exported_program_keeps_both_paths_and_matches_eager(resnet, x16):
    lw = attach(resnet, x16, LWACConfig(policy="neural"), latency_n=1)
    u = max(lw.bypassable, key=lambda i: lw.state.cost[i])
    g = torch.Generator().manual_seed(5)
    xs = torch.randn(8, *x16.shape[1:], generator=g) * torch.linspace(0.2, 3.0, 8).view(-1, 1, 1, 1)
    seen = []
    h = lw.acus[u].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad(), lw.pinned():
        lw(xs)
    h.remove()
    feats = summarise(seen[0], "mean")
    for a in lw.acus:
        c = a.controller
        with torch.no_grad():
            c.fc2.weight.zero_()
            c.fc2.bias.fill_(20.0)  # R ~ 1: runs
            if a.unit_index == u:
                c.set_standardisation(feats)
                c.fc2.weight.copy_(torch.randn(c.fc2.weight.shape, generator=g) * 0.5)
                c.fc2.bias.zero_()
        c.fuse()
    with torch.no_grad():
        r = lw.acus[u].controller.relevance(feats).sort()
    lw.set_lambda(float(r.values[3] + r.values[4]) / 2 / lw.state.cost[u])
    lo, hi = int(r.indices[0]), int(r.indices[-1])  # the least and the most relevant input for unit u
    exp = export(lw, x16)
    assert count_conds(exp.program) == len(lw.bypassable)  # one cond per gated unit, every branch kept
    paths = []
    for k in (lo, hi):
        x = xs[k:k + 1]
        lw.reset_counts()
        with torch.no_grad():
            eager = lw(x)
            exported = exp(x)
        paths.append(lw.state.bypassed[u])
        torch.testing.assert_close(exported, eager, rtol=1e-4, atol=1e-4)
    assert paths == [1, 0], "the two inputs must take different paths through unit u"
    # the pressures are the program's state: a runtime outside Python sets them
    exp.set_pressure([10.0] * len(exp.gated_units))  # gamma * R - 10 < 0: everything bypassed
    lw.set_lambda(10.0 / min(lw.state.cost[i] for i in lw.bypassable))
    with torch.no_grad():
        torch.testing.assert_close(exp(xs[:1]), lw(xs[:1]), rtol=1e-4, atol=1e-4)
    assert lw.state.bypassed[u] >= 1
