"""torchvision imports in every process that imported ``jobs`` first (jobs/torchvision_ops.py), in fresh processes."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import PY, REPO

pytest.importorskip("torchvision")

WITH_JOBS = """
import jobs, torch
from transformers import AutoProcessor  # the import that dies without the repair
import torchvision
from jobs import torchvision_ops
print("declared" if torchvision_ops._declared else "compiled")
if torchvision_ops._declared:
    try:
        torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    except RuntimeError as e:
        print("nms:", e)
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_transformers_and_torchvision_import_once_jobs_is_imported() -> None:
    proc = _python(WITH_JOBS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    if lines[0] == "compiled":
        return  # a torchvision whose compiled ops load beside this torch: nothing was declared
    # The ops were only declared: calling one says what is missing instead of computing garbage.
    assert lines[1].startswith("nms: Couldn't load custom C++ ops"), lines
    # And the repair is what made the import work: without it, this torchvision fails as pytorch/vision#9085
    # says. When an upgrade fixes that, this fails and jobs/torchvision_ops.py can go.
    bare = _python("import torchvision")
    assert bare.returncode != 0 and "operator torchvision::nms does not exist" in bare.stderr, bare.stderr[-500:]
