"""keep_freed_memory: freed tensor memory is reused instead of faulted in again (glibc)."""

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, sys, torch
from layerwise.malloc import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else False
x = torch.randn(64, 8, 14, 14)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):   # what UnIT's reference conv allocates and frees per call: columns, masks, products
    cols = torch.nn.functional.unfold(x, 5)                     # 5 MiB
    keep = cols.abs()[:, None] > torch.rand(16, 200, 1)        # 20 MiB
    torch.where(keep, cols[:, None], 0.0).sum()                 # 80 MiB
print(int(applied), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")


def _probe(mode: str, **env) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    applied, faults = out.stdout.split()
    return int(applied), int(faults)


@glibc
def test_freed_blocks_are_reused_not_faulted_in_again():
    applied, faults_on = _probe("on")
    _, faults_off = _probe("off")
    assert applied == 1
    # measured: 443,016 minor page faults with the allocator's defaults, 67,827 with it
    assert faults_on * 3 < faults_off


@glibc
def test_layerwise_malloc_default_leaves_the_allocator_alone():
    applied, faults = _probe("on", LAYERWISE_MALLOC="default")
    _, faults_on = _probe("on")
    assert applied == 0
    assert faults_on * 3 < faults


MEASURE = """
import torch
from layerwise.malloc import keep_freed_memory
from layerwise.measure import peak_memory
assert keep_freed_memory()
x = torch.ones(50_000_000); del x          # 200 MB touched, then freed: kept by the process
pm = peak_memory(lambda: float(torch.ones(50_000_000)[0]))
print(pm.delta_bytes)
"""


@glibc
def test_peak_memory_sees_a_call_that_reuses_kept_memory():
    """Without handing the kept memory back, the second 200 MB would reuse resident pages and the
    peak would not move (measured: a delta of 0 bytes)."""
    out = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 190_000_000
