"""HeapReuse: freed large blocks are reused, not page-faulted in again (Linux / glibc only)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from facemask_vae.callbacks import GLIBC
from tests.helpers import compose_config

# Faults of one alloc-touch-free cycle of a 64 MB block (16,384 pages), before and after.
PROBE = """
import resource
from facemask_vae.callbacks import reuse_freed_heap_memory

def faults_of_a_cycle():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = bytearray(64 * 2**20)  # zero-filled: every page is touched
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_a_cycle()
plain = faults_of_a_cycle()
assert reuse_freed_heap_memory()
faults_of_a_cycle()  # the heap grows once
print(plain, faults_of_a_cycle())
"""


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_heap_reuse_stops_large_blocks_from_faulting_in_again_each_time():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    plain, reused = map(int, done.stdout.split())
    assert plain > 10_000  # glibc's default: a fresh mmap per block, every page faults
    assert reused < 100


def test_training_reuses_the_heap_by_default(tmp_path):

    from facemask_vae.callbacks import HeapReuse
    from facemask_vae.training import build_callbacks, build_module

    cfg = compose_config(["data=synthetic", "model=vae"], tmp_path)
    assert any(isinstance(c, HeapReuse) for c in build_callbacks(cfg, build_module(cfg)))
