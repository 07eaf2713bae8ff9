import pytest

from layerwise.experiments import lwac_run
from layerwise.lwac import LWACError, PolicyStats, choose_policy


def test_lowest_val_latency_within_tolerance_wins():
    c = {"neural": PolicyStats(0.990, 1.70), "heuristic": PolicyStats(0.990, 1.60)}
    assert choose_policy(c, 0.99, 0.005).policy == "heuristic"
    c["heuristic"] = PolicyStats(0.980, 1.60)  # faster but 1 pt worse on validation: not allowed
    ch = choose_policy(c, 0.99, 0.005)
    assert ch.policy == "neural" and "lowest validation latency" in ch.reason


def test_none_within_tolerance_gives_the_most_accurate():
    c = {"neural": PolicyStats(0.95, 1.0), "heuristic": PolicyStats(0.97, 2.0)}
    assert choose_policy(c, 0.99, 0.005).policy == "heuristic"
    with pytest.raises(LWACError, match="at least one candidate"):
        choose_policy({}, 0.99, 0.005)


class _Spy:
    """A dataset wrapper that records whether it was read."""

    def __init__(self, ds, log):
        self.ds, self.log = ds, log

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        self.log.append("test")
        return self.ds[i]


def test_command_chooses_the_policy_before_reading_test(tmp_path, monkeypatch):
    events: list[str] = []
    real_load, real_choose = lwac_run.load_data_for_model, lwac_run.choose_policy

    def load(spec):
        data = real_load(spec)
        data.test = _Spy(data.test, events)
        return data

    def choose(stats, dense_val, tol):
        assert "test" not in events, "the test split was read before the policy was chosen"
        events.append("choose")
        seen.update(stats=stats, dense_val=dense_val)
        return real_choose(stats, dense_val, tol)

    seen: dict = {}
    monkeypatch.setattr(lwac_run, "load_data_for_model", load)
    monkeypatch.setattr(lwac_run, "choose_policy", choose)
    spec = lwac_run.RunSpec(model="multibranch-cnn", dataset="basic-motions", out=tmp_path, threads=1)
    out = lwac_run.run_lwac(spec, lwac_run.LWACOptions(quick=True))
    assert events[0] == "choose" and "test" in events
    lw = out.results.variants[1]
    pc = lw.extra["policy_choice"]
    assert pc["split"] == "validation" and pc["requested"] == "auto" and lw.extra["policy"] == pc["used"]
    assert set(seen["stats"]) == {"neural", "heuristic"}
    # the numbers it saw are the validation calibration's, not the test accuracy
    for pol, st in seen["stats"].items():
        cal = lw.extra["calibration"] if pol == pc["used"] else next(
            v.extra["calibration"] for v in out.results.variants if v.name == f"lwac-{pol}")
        assert st.val_accuracy == cal["chosen"]["accuracy"]
    assert seen["dense_val"] == lw.extra["calibration"]["dense_val_accuracy"]
    names = [v.name for v in out.results.variants]
    other = "heuristic" if pc["used"] == "neural" else "neural"
    assert f"lwac-{other}" in names
