"""A second process loading a core while LWAC runs under an absolute budget: the report's
fields, its shares computed from the latencies, and no spinner left behind, even on an error."""

import os
import subprocess
import time

import psutil
import pytest
import torch

from layerwise.lwac import LWACConfig, LWACError, attach
from layerwise.lwac.contention import ArmStats, measure_under_contention, spinners, start_spinner


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_arm_stats_against_the_budget():
    ms = [9.0, 9.5, 10.0, 10.9, 11.2, 20.0, 4.0, 10.05]
    s = ArmStats.of(ms, budget_ms=10.0, tol=0.1)
    assert s.n == 8
    assert s.share_within == pytest.approx(5 / 8)  # 9.0, 9.5, 10.0, 10.9, 10.05 are within 9..11
    assert s.share_at_or_under == pytest.approx(6 / 8)  # 4.0 is early: under the budget, outside the band
    assert s.median_ms == pytest.approx(sorted(ms)[3] / 2 + sorted(ms)[4] / 2)
    # median 10.025: within +-1.0025 of it are 9.5, 10.0, 10.9, 10.05 (9.0 misses by 0.0225)
    assert s.share_near_median == pytest.approx(4 / 8)
    skewed = ArmStats.of([1.0, 1.0, 1.05, 0.95, 10.0], budget_ms=5.0, tol=0.1)
    assert skewed.share_near_median == pytest.approx(4 / 5)  # around the median 1.0, not the mean 2.8 or the budget


def test_spinner_spins_and_is_reaped():
    with spinners(1, placement="os") as procs:
        (p,) = procs
        ps = psutil.Process(p.pid)
        t0 = sum(ps.cpu_times()[:2])
        time.sleep(1.0)
        busy = sum(ps.cpu_times()[:2]) - t0
        assert p.poll() is None
    assert busy > 0.05  # it really burns CPU (more than 5 % of a core, however loaded the machine)
    assert p.poll() is not None and _gone(p.pid)


def test_spinners_are_stopped_and_affinity_restored_on_an_exception():
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with pytest.raises(RuntimeError, match="boom"):
        with spinners(2) as procs:
            pids = [p.pid for p in procs]
            assert all(p.poll() is None for p in procs)
            if before is not None:
                assert len(os.sched_getaffinity(0)) == 1  # pinned beside the first spinner
            raise RuntimeError("boom")
    assert all(_gone(pid) for pid in pids)
    if before is not None:
        assert os.sched_getaffinity(0) == before


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two cores to place the spinner beside this process")
@pytest.mark.parametrize("placement, same", [("same", True), ("other", False)])
def test_spinner_placement_pins_it_on_or_beside_this_process_core(placement, same):
    before = os.sched_getaffinity(0)
    with spinners(1, placement=placement) as (p,):
        mine = os.sched_getaffinity(0)
        theirs = psutil.Process(p.pid).cpu_affinity()
        assert len(mine) == 1 and len(theirs) == 1
        assert (set(theirs) == mine) is same
    assert os.sched_getaffinity(0) == before
    with pytest.raises(LWACError, match="placement 'elsewhere': use one of same, other, os"):
        with spinners(1, placement="elsewhere"):
            pass


def test_a_spinner_exits_when_its_parent_is_gone():
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that is no longer anybody's parent
    p = start_spinner(-1, parent_pid=dead.pid)
    try:
        p.wait(timeout=10)  # it notices within ~2**20 iterations
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
    assert p.returncode == 0


def test_contention_report_on_a_tiny_model(resnet, x16):
    lw = attach(resnet, x16, LWACConfig(policy="heuristic"), latency_n=3)
    lw.state.relevance = [0.5] * len(lw.units)
    lw.lam_range = (0.0, 1.0 / min(lw.state.cost[i] for i in lw.bypassable))  # top: everything bypassed
    torch.manual_seed(2)
    inputs = [torch.randn(1, 3, 16, 16) for _ in range(8)]
    budget = 0.8 * lw.dense_ms
    plain = lw.strip()
    rep = measure_under_contention(lw, plain, inputs, budget, n=30, quiet_n=10, settle=10, cores=1)
    assert set(rep.phases) == {"quiet", "contended"}
    assert len(rep.levels) >= 2 and rep.levels[0]["bypassed_per_input"] == 0  # lambda 0 to the top of the range
    held = {f"level-{k}" for k in range(len(rep.levels))}
    for name, phase in rep.phases.items():
        assert set(phase) == {"lwac", "dense", "floor", "lwac-levels"} | held  # the pi controller, levels beside it
        best = rep.best_fixed_level[name]
        assert best["share_within"] == max(phase[k].share_within for k in held)
        assert phase[best["name"]].share_within == best["share_within"]
        for arm in phase.values():
            assert 0.0 <= arm.share_within <= arm.share_at_or_under <= 1.0 and arm.p5_ms <= arm.median_ms <= arm.p95_ms
        assert phase["lwac"].mean_lam is not None and phase["lwac"].mean_bypassed_units >= 0
    assert rep.phases["contended"]["lwac"].n == 30 and rep.phases["quiet"]["dense"].n == 10
    assert rep.budget_ms == pytest.approx(budget) and rep.tolerance == 0.1 and rep.cores == 1
    for k in ("quiet", "contended"):
        assert rep.reachable[k] == (rep.phases[k]["floor"].share_at_or_under >= 0.95)
        assert rep.looser_than_dense[k] == (rep.phases[k]["dense"].median_ms < 0.9 * budget)
    assert len(rep.load_average["start"]) == 3 and len(rep.load_average["end"]) == 3
    assert f"{budget:g} ms" in rep.verdict
    assert sum(w in rep.verdict for w in ("; met", "; missed", "OUT OF REACH", "looser than dense")) == 1
    assert rep.spinner_pids and all(_gone(pid) for pid in rep.spinner_pids)
    json = rep.to_json()
    assert json["phases"]["contended"]["lwac"]["share_within"] == rep.phases["contended"]["lwac"].share_within
    assert lw.budget is None  # the model measured is a clone


def test_contention_measurement_cleans_up_when_the_model_fails(resnet, x16):
    lw = attach(resnet, x16, LWACConfig(policy="heuristic"), latency_n=3)
    seen = []

    def failing(x):
        seen.extend(p.pid for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE)
        if seen:
            raise RuntimeError("model failed under contention")
        return x

    with pytest.raises(RuntimeError, match="under contention"):
        measure_under_contention(lw, failing, [x16], 5.0, n=5, quiet_n=2, settle=0)
    assert seen and all(_gone(pid) for pid in seen)


def test_bad_contention_input_is_refused(resnet, x16):
    lw = attach(resnet, x16, LWACConfig(policy="heuristic"), latency_n=1)
    with pytest.raises(LWACError, match="milliseconds"):
        measure_under_contention(lw, lw.strip(), [x16], -1.0)
    with pytest.raises(LWACError, match="at least one input"):
        measure_under_contention(lw, lw.strip(), [], 5.0)
