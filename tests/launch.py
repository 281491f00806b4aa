"""Launching the CLI under torchrun for the data-parallel tests (tests/test_distributed.py,
tests/test_generative_distributed.py): 2 gloo ranks on the CPU, one thread each. Not a test module."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "ddp_worker.py"
TIMEOUT = 150  # seconds: a hung job fails the test instead of the suite


def torchrun(args: list[str], worker: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m torch.distributed.run --standalone --nproc-per-node 2 -m winn_robust ARGS`
    (or the fault-injecting worker, tests/ddp_worker.py), one thread per rank, the repository
    first on the path."""
    entry = [str(WORKER)] if worker else ["-m", "winn_robust"]
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *entry, *args], env={**clean, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env},
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO)
