"""The `score-sde` CLI end to end on the digits: train a tiny model, then sample, likelihood,
evaluate and encode from its checkpoint, each a `python -m scripts.main` process as a user runs
it, checking the files each mode writes; a bad override fails before any work.

The refusals on the trained workdir (a changed model, a misspelled split, a missing weights file)
are in-process calls of `scripts.main.main`, as in test_cli_errors.py: each fails before any model
is built, so a fresh process (~5 s of CPU to import jax) would only time the imports; one bad
override still runs as its own process, for the exit status and stderr a user sees."""
import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = f"--config={REPO / 'configs' / 'digits.py'}"
OVERRIDES = [
    "model.name=mlp", "model.hidden_dims=(32,32)", "model.nf=16", "training.batch_size=16", "training.n_iters=4",
    "training.snapshot_freq=2", "training.snapshot_freq_for_preemption=2", "training.log_freq=1",
    "training.eval_freq=2", "training.snapshot_sampling=false", "sampling.method=ddim", "sampling.num_steps=4",
    "sampling.batch_size=8", "sampling.rtol=1e-3", "sampling.atol=1e-3", "eval.batch_size=8",
]
TRAIN_STEPS = 4


def score_sde(mode: str, workdir: pathlib.Path, *extra: str, overrides=OVERRIDES) -> subprocess.CompletedProcess:
    """`score-sde <mode> --config=digits.py --workdir=... --config.<override>... <extra>` in a
    fresh process (sharing this suite's compilation cache)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", SCORE_SDE_CACHE=str(workdir.parent / "cache"),
               JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
    argv = [sys.executable, "-m", "scripts.main", mode, CONFIG, f"--workdir={workdir}",
            *[f"--config.{o}" for o in overrides], *extra]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def score_sde_in_process(mode: str, workdir: pathlib.Path, *extra: str, overrides=OVERRIDES) -> tuple[int, str]:
    """`score_sde` as an in-process call of `scripts.main.main`: `(exit status, stderr)`."""
    from scripts import main as cli

    argv = ["score-sde", mode, CONFIG, f"--workdir={workdir}", *[f"--config.{o}" for o in overrides], *extra]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
    return exited.value.code, err.getvalue()


@pytest.fixture
def cache_in_tmp(workdir, monkeypatch):
    """In-process calls write their caches where the subprocesses do, not in the user's."""
    monkeypatch.setenv("SCORE_SDE_CACHE", str(workdir.parent / "cache"))


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """A briefly trained digits classifier (keeps the tests fast): the modes load it instead of
    training one."""
    from configs import load_config
    from training import digits_classifier

    path = tmp_path_factory.mktemp("classifier")
    digits_classifier.get_or_train(path, load_config(REPO / "configs" / "digits.py"), steps=10)
    return path


def run_ok(mode: str, workdir: pathlib.Path, *extra: str) -> dict | None:
    """Run a mode that must succeed; returns the JSON object it prints on stdout (the training
    modes print one, the application modes write summary.json instead and print nothing)."""
    result = score_sde(mode, workdir, *extra)
    assert result.returncode == 0, f"score-sde {mode} failed:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout) if result.stdout.strip() else None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A workdir trained for TRAIN_STEPS steps through `score-sde train`."""
    path = tmp_path_factory.mktemp("cli") / "run"
    assert run_ok("train", path) == {"step": TRAIN_STEPS, "workdir": str(path)}
    return path


def test_train_writes_checkpoints_logs_and_config(workdir):
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [2, 4]
    assert (workdir / "checkpoints-meta" / str(TRAIN_STEPS)).is_dir()
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {r["step"] for r in records if "loss" in r} == {1, 2, 3, 4}
    assert all(np.isfinite(r["loss"]) for r in records if "loss" in r)
    assert json.loads((workdir / "config.json").read_text())["model"]["name"] == "mlp"


def test_sample_writes_png_grid_and_npz(workdir):
    record = run_ok("sample", workdir, "--num_samples=6")
    assert record["step"] == TRAIN_STEPS and record["num_samples"] == 6 and record["sampler"] == "ddim"
    samples = np.load(record["npz"])["samples"]
    assert samples.shape == (6, 8, 8, 1) and samples.min() >= 0.0 and samples.max() <= 1.0
    assert pathlib.Path(record["npz"]) == workdir / "samples" / f"ddim_step{TRAIN_STEPS}.npz"
    with Image.open(record["png"]) as grid:
        assert grid.size[0] > 8 and grid.size[1] > 8


def test_sample_seeds_writes_each_seed_once_whatever_the_batch_size(workdir, cache_in_tmp):
    record = run_ok("sample", workdir, "--seeds=0-4")
    out = workdir / "samples" / f"seeds_ddim_step{TRAIN_STEPS}"
    assert (record["written"], record["seeds"], record["checkpoint_step"], record["nfe"]) == (5, "0-4", TRAIN_STEPS, 4)
    first = {k: np.load(out / "000000" / f"{k:06d}.npy") for k in range(5)}
    assert first[0].shape == (8, 8, 1) and not np.allclose(first[0], first[1])
    (out / "000000" / "000002.npy").unlink()  # as if killed before seed 2 was written
    again = run_ok("sample", workdir, "--seeds=1-5", "--config.sampling.batch_size=2")
    assert (again["written"], again["skipped_existing"]) == (2, 3)  # seeds 2 and 5 only
    np.testing.assert_allclose(np.load(out / "000000" / "000002.npy"), first[2], rtol=1e-5, atol=1e-5)
    assert again["sampler_options"]["num_steps"] == 4
    status, err = score_sde_in_process("sample", workdir, "--seeds=0-1", "--config.sampling.eta=1.0")
    assert status == 2 and "holds samples of another run" in err, err[-2000:]  # never mixed into one folder


def test_likelihood_writes_bits_per_dim_json(workdir):
    record = run_ok("likelihood", workdir, "--split=test", "--max_examples=4")
    path = workdir / "eval" / f"bpd_test_step{TRAIN_STEPS}.json"
    stored = json.loads(path.read_text())
    assert {**stored, "file": str(path)} == record and stored["num_examples"] == 4 and stored["split"] == "test"
    # A barely trained model on the 17-level digits centred to [-1, 1]: finite, positive bits/dim, 2/17 bins.
    assert np.isfinite(stored["bpd"]) and stored["bpd"] > 0 and stored["bin_width"] == 2 / 17
    assert stored["nfe"] > 0


def test_evaluate_writes_digits_fid_kid_and_bpd(workdir, classifier_dir):
    record = run_ok("evaluate", workdir, f"--classifier_dir={classifier_dir}", "--num_samples=8",
                    "--max_examples=4")
    path = workdir / "eval" / f"metrics_step{TRAIN_STEPS}.json"
    stored = json.loads(path.read_text())
    assert {**stored, "file": str(path)} == record
    assert stored["feature_extractor"] == "digits" and stored["num_samples"] == 8
    assert np.isfinite(stored["fid"]) and stored["fid"] > 0 and np.isfinite(stored["kid"])
    assert np.isfinite(stored["bpd"]) and stored["num_examples"] == 4


@pytest.mark.slow  # compiles the full Inception network: minutes on CI's CPU
def test_evaluate_with_inception_weights_reports_fid_kid_and_inception_score(workdir, random_inception_weights):
    record = run_ok("evaluate", workdir, "--feature_extractor=inception",
                    f"--inception_weights={random_inception_weights[1]}", "--num_samples=10",
                    "--config.eval.enable_bpd=false", "--config.eval.fid_num_real=40")
    assert record["feature_extractor"] == "inception" and record["num_samples"] == 10
    assert np.isfinite(record["fid"]) and record["fid"] > 0 and np.isfinite(record["kid"])
    assert record["inception_score"] >= 1.0 and "bpd" not in record
    assert record["fid_dataset"] == "test" and record["num_real"] == 40
    cached = pathlib.Path(record["reference_features"])  # kept for the next evaluation
    assert cached.parent == workdir.parent / "cache" / "fid_reference"
    assert np.load(cached)["features"].shape == (40, 2048)


@pytest.mark.parametrize("mode", ["train", "sample"])
def test_a_changed_model_is_refused_with_a_message_and_nothing_is_touched(workdir, cache_in_tmp, mode):
    def snapshot():
        return {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}

    before = snapshot()
    status, err = score_sde_in_process(mode, workdir, "--config.model.hidden_dims=(48,48)")
    last = err.strip().splitlines()[-1]
    assert status == 1 and last.startswith(f"score-sde {mode}: "), err[-2000:]
    assert "Traceback" not in err
    assert "hidden_dims" in last or "shape" in last, last
    assert snapshot() == before


@pytest.mark.parametrize("mode, extra, message", [
    ("evaluate", ["--config.eval.fid_dataset=tset"],
     "score-sde evaluate: eval.fid_dataset='tset' cannot be read from data set 'digits': Unknown split 'tset'."),
    ("evaluate", ["--config.eval.enable_sampling=false", "--split=tset"],
     "score-sde evaluate: --split='tset' cannot be read from data set 'digits': Unknown split 'tset'."),
    ("likelihood", ["--config.eval.bpd_dataset=validation"],
     "score-sde likelihood: eval.bpd_dataset='validation' cannot be read from data set 'digits': Unknown split 'validation'."),
])
def test_a_misspelled_split_is_named_before_any_work(workdir, cache_in_tmp, mode, extra, message):
    status, err = score_sde_in_process(mode, workdir, *extra)
    assert status == 2 and err.strip().splitlines()[-1].startswith(message), err


@pytest.mark.parametrize("weights, message", [
    (None, "score-sde evaluate: --feature_extractor=inception needs --inception_weights=<.npz>"),
    ("missing.npz", "score-sde evaluate: Inception weights file"),
])
def test_evaluate_with_inception_names_a_missing_weights_file(workdir, cache_in_tmp, weights, message):
    extra = ["--feature_extractor=inception"] + ([f"--inception_weights={workdir / weights}"] if weights else [])

    def written():
        return sorted(p.name for p in (workdir / "eval").iterdir()) if (workdir / "eval").exists() else []

    before = written()
    status, err = score_sde_in_process("evaluate", workdir, *extra)
    assert status == 2 and err.strip().splitlines()[-1].startswith(message), err
    assert written() == before


def test_encode_writes_latents_and_reconstruction(workdir, tmp_path):
    images = np.random.default_rng(0).random((2, 8, 8, 1)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", images=images)
    assert run_ok("encode", workdir, f"--input={tmp_path / 'inputs.npz'}", f"--output_dir={tmp_path / 'enc'}") is None
    summary = json.loads((tmp_path / "enc" / "summary.json").read_text())
    assert np.load(tmp_path / "enc" / "latents.npz")["images"].shape == images.shape
    assert np.load(tmp_path / "enc" / "reconstruction.npz")["images"].shape == images.shape
    # A 4-step model's flow is far from the data's and ill-conditioned, so only finiteness is
    # checked here; round-trip accuracy is tested on exact scores in tests/samplers/test_encode.py.
    assert np.isfinite(summary["round_trip_max_abs_error"]) and summary["nfe"] > 0


@pytest.mark.parametrize("override, message, in_process", [
    ("--config.training.batch_sise=4",
     "score-sde train: invalid config: unknown config key 'training.batch_sise' "
     "(did you mean 'training.batch_size'?)", False),
    ("--config.model.nf=wide", "score-sde train: invalid config: config key 'model.nf' must be int, got 'wide'",
     True),
], ids=["process", "in_process"])
def test_bad_override_fails_before_any_work(tmp_path, override, message, in_process):
    workdir = tmp_path / "never"
    if in_process:
        status, err = score_sde_in_process("train", workdir, override, overrides=())
    else:
        result = score_sde("train", workdir, override, overrides=())
        status, err = result.returncode, result.stderr
        assert "Traceback" not in err
    assert status == 2
    assert err.strip().splitlines()[-1] == message
    assert not workdir.exists()


@pytest.mark.slow
def test_trained_digits_model_encodes_and_decodes_within_solver_tolerance(tmp_path):
    """Issue check: through the probability flow of a digits model trained for 1500 steps, test
    images come back within the solver tolerance (max abs error < 1e-2 at rtol = atol = 1e-5, on
    [-1, 1] data)."""
    from configs import load_config
    from training.data import load_uint8_images

    config = REPO / "configs" / "digits_demo.py"
    workdir = tmp_path / "run"
    tight = ["sampling.rtol=1e-5", "sampling.atol=1e-5"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")

    def cli(mode, *extra):
        argv = [sys.executable, "-m", "scripts.main", mode, f"--config={config}", f"--workdir={workdir}",
                *[f"--config.{o}" for o in tight], *extra]
        result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]

    cli("train", "--max_steps=1500")
    images = load_uint8_images(load_config(config), "test")[:8]
    np.savez(tmp_path / "test_images.npz", images=images)
    cli("encode", f"--input={tmp_path / 'test_images.npz'}", f"--output_dir={tmp_path / 'enc'}")
    summary = json.loads((tmp_path / "enc" / "summary.json").read_text())
    assert summary["round_trip_max_abs_error"] < 1e-2, summary


def test_demo_trains_samples_and_reports_where_everything_was_written(tmp_path, classifier_dir):
    """README command one, on a budget of seconds and with the demo config's network and sampler
    shrunk (its 512-wide MLP and 250-step sampler only cost compile and run time here): train, grid,
    digits-FID/KID and bits/dim."""
    small = ["model.hidden_dims=(32,32)", "model.nf=16", "training.batch_size=16", "sampling.method=ddim",
             "sampling.num_steps=4", "sampling.rtol=1e-3", "sampling.atol=1e-3", "eval.batch_size=8"]
    workdir = tmp_path / "demo"
    env = dict(os.environ, JAX_PLATFORMS="cpu", SCORE_SDE_CACHE=str(tmp_path / "cache"),
               JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
    result = subprocess.run([sys.executable, "-m", "scripts.main", "demo", f"--workdir={workdir}",
                             f"--config={REPO / 'configs' / 'digits_demo.py'}", *[f"--config.{o}" for o in small],
                             "--demo_train_minutes=0.05", "--num_samples=16", "--max_examples=4",
                             f"--classifier_dir={classifier_dir}"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["train_steps"] > 0 and np.isfinite(report["digits_fid"]) and np.isfinite(report["digits_kid"])
    assert np.isfinite(report["test_bits_per_dim_median"]) and report["test_bits_per_dim_median"] > 0
    assert report["test_likelihood_failed_solves"] == 0 and report["test_likelihood_nonfinite_examples"] == 0
    for name in ("checkpoints", "sample_grid", "samples_npz", "metrics", "loss_curve", "training_log", "tensorboard"):
        assert pathlib.Path(report["written"][name]).exists(), name
    with Image.open(report["written"]["sample_grid"]) as grid:
        assert grid.size[0] >= 8 * 8  # a grid of 64 digits
