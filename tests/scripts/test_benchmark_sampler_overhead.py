"""The sampler-overhead benchmark runs end to end on a tiny network and writes its JSON."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_overhead_benchmark_reports_every_sampler_and_no_compile_for_a_second_checkpoint(tmp_path):
    out = tmp_path / "overhead.json"
    cmd = [sys.executable, "-m", "scripts.benchmark_sampler_overhead", "--configs=configs/toy2d.py", "--batch=2",
           "--steps=2", "--repeats=1", "--samplers=ddim,edm_heun,ode_euler", f"--out={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout) == report
    (run,) = report["runs"]
    assert run["batch"] == 2 and run["forward_s"] > 0
    assert {name: r["nfe"] for name, r in run["samplers"].items()} == {"ddim": 2, "edm_heun": 3, "ode_euler": 2}
    for name, result in run["samplers"].items():
        assert result["second_checkpoint_compiles"] == 0, name
        assert np.isfinite(result["overhead"]) and result["overhead"] > 0, name
