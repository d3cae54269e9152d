"""The sampler benchmark runs end to end on a tiny budget and writes its JSON, table and plot."""
import json
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_benchmark_writes_error_against_nfe_with_the_monte_carlo_floor(tmp_path):
    cmd = [sys.executable, "-m", "scripts.benchmark_samplers", "--sdes=vpsde", "--nfe=3,12",
           "--samplers=dpm_solver_2m,ode_tsit5", "--ode_tolerances=1e-2", "--num_samples=400",
           "--noise_pairs=2", "--num_projections=16", "--sweep_sigma_min=0.05,0.3", "--sweep_rho=7",
           f"--out={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "benchmark_samplers.json").read_text())
    assert json.loads(proc.stdout) == report
    by_run = {(r["sampler"], r["nfe"], r["setting"]): r["sliced_w1"] for r in report["results"]}
    for nfe in (3, 12):
        assert {("dpm_solver_2m", nfe, "default"), ("dpm_solver_2m", nfe, "best")} <= set(by_run)
        # the best setting is the lowest of the sweep and the default
        assert by_run[("dpm_solver_2m", nfe, "best")] <= by_run[("dpm_solver_2m", nfe, "default")]
    assert [r["sampler"] for r in report["results"]].count("ode_tsit5") == 1
    assert all(np.isfinite(d) and d >= 0 for d in by_run.values())
    # Four times the evaluations from the same prior sample: the deterministic solvers get closer.
    assert by_run[("dpm_solver_2m", 12, "default")] < by_run[("dpm_solver_2m", 3, "default")]
    assert report["noise_floor"]["mean"] > 0 and report["noise_floor"]["pairs"] == 2
    assert set(report["summary"]["vpsde"]["best_default"]) == {"3", "12"}
    table = (tmp_path / "benchmark_samplers.md").read_text()
    assert "| dpm_solver_2m |" in table and "12 nfe" in table
    with Image.open(tmp_path / "benchmark_samplers.png") as plot:
        assert plot.size[0] > 100 and plot.size[1] > 100
