"""The sampler benchmark runs end to end on a tiny budget and writes its JSON, table and plot."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow  # several compiled sweeps; the checks below import the script by default
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
        assert {("dpm_solver_2m", nfe, setting) for setting in ("default", "peer", "best")} <= set(by_run)
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



def _report(sde, seed=0):
    results = [{"sde": sde, "sampler": "ddim", "setting": setting, "nfe": 10, "sliced_w1": value}
               for setting, value in (("default", 0.1), ("peer", 0.2))]
    return {"sdes": {sde: sde}, "num_samples": 8, "num_projections": 4, "seed": seed,
            "noise_floor": {"mean": 0.01, "std": 0.0, "pairs": 2}, "results": results,
            "sweep": {sde: {"sigma_min": [], "rho": [7.0], "schedule": "karras", "samples": 8, "max_nfe": 10}}}


# In a subprocess: the script's flags (num_samples, nfe) clash with the CLI's and benchmark_gpu's.
CHECKS = """
import json, sys
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
from absl import app
from samplers.sample_distance import sliced_wasserstein_1
from scripts import benchmark_samplers as bench

key_x, key_y, key_p = jax.random.split(jax.random.PRNGKey(0), 3)
x, y = jax.random.normal(key_x, (300, 2)), 1.0 + jax.random.normal(key_y, (300, 2))
directions = bench.projection_directions(key_p, 2, 16)
host = bench.sliced_w1_to(x, bench.sorted_projections(y, directions), directions)
np.testing.assert_allclose(host, float(sliced_wasserstein_1(key_p, x, y, 16)), rtol=1e-12)

ve, vp, other = sys.argv[1:]
merged = bench.merge([ve, vp], [10])
assert set(merged["sdes"]) == {"vesde", "vpsde"} and len(merged["results"]) == 4, merged
assert merged["summary"]["vpsde"]["best_peer"]["10"] == {"sampler": "ddim", "sliced_w1": 0.2, "nfe": 10}, merged
assert "| ddim | 0.100 / 0.200 |" in bench.markdown_table(merged, [10])
try:
    bench.merge([ve, other], [10])
    raise AssertionError("merged reports of different samples")
except app.UsageError as error:
    assert "differs" in str(error), error
print("ok")
"""


def test_host_distance_is_the_library_one_and_merge_checks_its_reports(tmp_path):
    paths = []
    for name, content in (("ve", _report("vesde")), ("vp", _report("vpsde")), ("other", _report("vpsde", seed=1))):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(content))
    proc = subprocess.run([sys.executable, "-c", CHECKS, *map(str, paths)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
