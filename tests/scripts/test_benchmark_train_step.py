"""The training-step benchmark times the real train step of a config and reports its figures."""
import json
import pathlib
import subprocess
import sys

import pytest

import models
from configs.load import load_config
from scripts.benchmark_train_step import benchmark

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_benchmark_reports_throughput_of_the_configs_train_step():
    config = load_config(ROOT / "configs/toy2d.py")
    result = benchmark(config, batch_size=8, repeats=3, steps_per_call=2)
    assert result["param_count"] == models.count_params(models.build_model(config), (1, 2)) > 0
    assert (result["batch_size"], result["steps_per_call"], result["repeats"]) == (8, 2, 3)
    assert result["compile_s"] > 0 and result["step_ms_min"] <= result["step_ms"] <= result["step_ms_max"]
    assert result["images_per_s"] == pytest.approx(8 * 1e3 / result["step_ms"])
    assert result["compute_dtype"] == "float32" and result["device"].startswith("cpu")
    assert result["memory"]["peak_estimate_bytes"] >= result["memory"]["argument_bytes"] > 0
    assert result["flops_per_step"] > 0 and result["grad_accum_steps"] == 1 and not result["remat"]
    # --compile_only compiles the step on the abstract state: the same program, so the same analysis
    compiled_only = benchmark(config, batch_size=8, repeats=3, steps_per_call=2, compile_only=True)
    assert compiled_only["memory"] == result["memory"] and "images_per_s" not in compiled_only
    assert compiled_only["flops_per_step"] == result["flops_per_step"]
    one_step = benchmark(config, batch_size=8, repeats=1, compile_only=True)  # no scan of several steps
    assert one_step["flops_per_step"] == pytest.approx(result["flops_per_step"], rel=1e-3)


def test_benchmark_rejects_a_batch_that_is_not_positive():
    with pytest.raises(ValueError, match="batch_size"):
        benchmark(load_config(ROOT / "configs/toy2d.py"), batch_size=0, repeats=1)


def test_command_line_prints_json_with_overrides(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "scripts.benchmark_train_step", "--config=configs/toy2d.py", "--batch_size=4",
           "--repeats=1", "--config.model.compute_dtype=bfloat16", f"--output={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    printed = json.loads(proc.stdout)
    assert printed == json.loads(out.read_text())
    assert printed["compute_dtype"] == "bfloat16" and printed["batch_size"] == 4
    assert printed["config"] == "configs/toy2d.py"


@pytest.mark.slow
@pytest.mark.timeout(1800)  # eight toy-network compiles: over the suite's 300 s on a 2-core CPU
def test_gpu_benchmark_runs_every_case_at_toy_sizes():
    from scripts.benchmark_gpu import run_all

    result = run_all(batch_size=2, nfe=3, repeats=1, peak_tflops=1.0, budget_s=1e9, toy=True)
    assert not result["skipped"]
    for net in ("ddpmpp", "ncsnpp"):
        for dtype in ("float32", "bfloat16"):
            case = result["train"][net][dtype]
            assert case["images_per_s"] > 0 and case["compute_dtype"] == dtype and 0 < case["mfu"] < 1
            assert case["memory"]["peak_estimate_bytes"] > 0
        for method in ("pc", "dpm_solver"):
            assert 0 < result["sample"][net][method]["overhead"] < 100
        assert {m: r["nfe"] for m, r in result["sample"][net].items()} == {"pc": 3, "dpm_solver": 3}
