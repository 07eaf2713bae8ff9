import pytest
import torch
from torch import nn

from layerwise.errors import LayerwiseError
from layerwise.lwac import LWACConfig, attach, bypass_labels, gather_relevance


def test_model_without_calibratable_unit():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(LayerwiseError, match="has no calibratable unit .* pass block_types="):
        attach(model, torch.randn(1, 12))


def test_user_block_types_make_units():
    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 12)

        def forward(self, x):
            return self.fc(x)

    model = nn.Sequential(Mine(), nn.Linear(12, 3)).eval()
    lw = attach(model, torch.randn(1, 12), LWACConfig(mode="soft", policy="heuristic"), block_types=(Mine,),
                latency_n=1)
    assert [u.name for u in lw.units] == ["0"] and not lw.units[0].bypassable


def test_empty_validation_split(resnet, x16):
    lw = attach(resnet, x16, latency_n=1)
    empty = torch.utils.data.TensorDataset(torch.zeros(0, 3, 16, 16), torch.zeros(0, dtype=torch.long))
    with pytest.raises(LayerwiseError, match="validation split is empty"):
        gather_relevance(lw, empty)
    with pytest.raises(LayerwiseError, match="validation split is empty"):
        bypass_labels(lw, empty)


@pytest.mark.parametrize("kw,msg", [({"mode": "skip"}, "mode must be"), ({"threshold": 1.0}, "threshold must be"),
                                    ({"theta": (0, 0, 0)}, "theta must be")])
def test_bad_config(kw, msg, resnet, x16):
    with pytest.raises(LayerwiseError, match=msg):
        attach(resnet, x16, LWACConfig(**kw))


def test_budget_on_model(resnet, x16):
    lw = attach(resnet, x16, latency_n=1)
    with pytest.raises(LayerwiseError, match=r"outside \(0, 1\]"):
        lw.set_budget(1.2, dense_ms=1.0)


def test_budget_options_that_contradict_are_refused_before_any_work():
    from layerwise.experiments.lwac_run import LWACOptions
    with pytest.raises(LayerwiseError, match="--contention measures inputs against an absolute budget: add "
                                             "--latency-budget-ms MS"):
        LWACOptions(contention=1).validate()
    with pytest.raises(LayerwiseError, match="--budget-controller levels holds an absolute budget: add "
                                             "--latency-budget-ms MS"):
        LWACOptions(budget_controller="levels").validate()
    with pytest.raises(LayerwiseError, match="--budget-controller 'fuzzy': use one of pi, levels"):
        LWACOptions(budgets_ms=[1.0], budget_controller="fuzzy").validate()
    assert LWACOptions(budgets_ms=[1.0], budget_controller="levels").validate().budget_controller == "levels"
