"""The application modes end to end on a tiny checkpoint: files written, shapes, the masked region
kept, AUROC consistent, and clear errors for wrong inputs."""
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from configs import load_config
from samplers.anomaly import auroc
from scripts import application_modes as app
from training.data import get_data_scaler
from training.train_loop import train

OVERRIDES = [
    "model.name=mlp", "model.hidden_dims=(32,32)", "model.nf=16", "training.batch_size=16", "training.n_iters=2",
    "training.snapshot_freq=2", "training.snapshot_freq_for_preemption=2", "training.log_freq=1",
    "training.eval_freq=2", "training.snapshot_sampling=false", "sampling.method=ddim", "sampling.num_steps=4",
    "sampling.rtol=1e-3", "sampling.atol=1e-3",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A digits config with a tiny MLP and a workdir holding a 2-step checkpoint."""
    config = load_config("configs/digits.py", OVERRIDES)
    workdir = tmp_path_factory.mktemp("workdir")
    train(config, workdir, progress=False)
    rng = np.random.default_rng(0)
    images = rng.random((4, 8, 8, 1)).astype(np.float32)
    np.savez(workdir / "inputs.npz", images=images)
    return config, workdir, images


def test_denoise_writes_mean_and_posterior_samples(run):
    config, workdir, images = run
    summary = app.denoise_inputs(config, workdir, workdir / "inputs.npz", add_noise=0.2, posterior_samples=2)
    out = workdir / "denoise"
    assert json.loads((out / "summary.json").read_text()) == summary
    assert np.load(out / "denoised.npz")["images"].shape == images.shape
    assert np.load(out / "posterior_samples.npz")["images"].shape == (4, 2, 8, 8, 1)
    assert summary["mse_noisy"] == pytest.approx(0.04, rel=0.3)
    assert np.isfinite(summary["mse_denoised"]) and summary["posterior_nfe"] == 4
    assert Image.open(out / "denoised.png").size[0] > 8


def test_edit_from_png_folder_keeps_the_masked_region(run, tmp_path):
    config, workdir, images = run
    folder = tmp_path / "pngs"
    folder.mkdir()
    pixels = np.round(images * 255).astype(np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image[..., 0], "L").save(folder / f"{i}.png")
    mask = np.zeros((8, 8), np.uint8)
    mask[:, :4] = 255  # keep the left half
    Image.fromarray(mask, "L").save(tmp_path / "mask.png")
    summary = app.edit_inputs(config, workdir, folder, output_dir=tmp_path / "edit", strength=0.6,
                              mask_path=tmp_path / "mask.png")
    edited = np.load(tmp_path / "edit" / "edited.npz")["images"]
    expected = get_data_scaler(config)(pixels.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(edited[:, :, :4], expected[:, :, :4])
    assert not np.allclose(edited[:, :, 4:], expected[:, :, 4:], atol=1e-3)
    assert summary["masked"] and summary["nfe"] == 4


def test_encode_decode_and_interpolate(run):
    config, workdir, images = run
    summary = app.encode_inputs(config, workdir, workdir / "inputs.npz")
    latents = workdir / "encode" / "latents.npz"
    assert np.load(latents)["images"].shape == images.shape
    decoded = app.decode_inputs(config, workdir, latents)
    reconstruction = np.load(workdir / "encode" / "reconstruction.npz")["images"]
    np.testing.assert_allclose(np.load(workdir / "decode" / "decoded.npz")["images"], reconstruction, atol=1e-5)
    assert summary["nfe"] > 0 and decoded["nfe"] > 0 and np.isfinite(summary["round_trip_max_abs_error"])
    app.interpolate_inputs(config, workdir, workdir / "inputs.npz", num=3)
    path = np.load(workdir / "interpolate" / "interpolation.npz")["images"]
    assert path.shape == (2, 3, 8, 8, 1) and np.isfinite(path).all()


def test_anomaly_scores_ranking_and_auroc(run):
    config, workdir, _ = run
    labels = np.array([0, 1, 0, 1])
    np.savez(workdir / "labels.npz", labels=labels)
    summary = app.anomaly_inputs(config, workdir, workdir / "inputs.npz", labels_path=workdir / "labels.npz",
                                 times=(0.1, 0.3), num_draws=2)
    scores = np.asarray(summary["scores"])
    assert scores.shape == (4,) and np.all(np.diff(scores[summary["ranking"]]) <= 0)
    assert summary["auroc"] == auroc(scores, labels)


def test_anomaly_nll_score_is_the_flow_bits_per_dim(run):
    config, workdir, _ = run
    np.savez(workdir / "labels.npz", labels=np.array([0, 1, 0, 1]))
    summary = app.anomaly_inputs(config, workdir, workdir / "inputs.npz", labels_path=workdir / "labels.npz",
                                 score_name="nll")
    scores = np.asarray(summary["scores"])
    assert summary["score"] == "nll" and scores.shape == (4,) and np.all(np.isfinite(scores))
    assert np.all(np.diff(scores[summary["ranking"]]) <= 0)
    with pytest.raises(ValueError, match="unknown anomaly score 'loss'"):
        app.anomaly_inputs(config, workdir, workdir / "inputs.npz", score_name="loss")


def test_wrong_shapes_and_missing_checkpoints_fail_clearly(run, tmp_path):
    config, workdir, _ = run
    np.savez(tmp_path / "big.npz", images=np.zeros((2, 16, 16, 1), np.float32))
    with pytest.raises(ValueError, match=r"data\.image_size"):
        app.denoise_inputs(config, workdir, tmp_path / "big.npz")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        app.anomaly_inputs(config, tmp_path / "empty", workdir / "inputs.npz")
    # eval.checkpoint picks the step, as in every mode: the run has step 2 only
    before = config.copy_and_resolve_references()
    before.eval.checkpoint = 1
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        app.denoise_inputs(before, workdir, workdir / "inputs.npz")
    with pytest.raises(ValueError, match="even number"):
        np.savez(tmp_path / "three.npz", images=np.zeros((3, 8, 8, 1), np.float32))
        app.interpolate_inputs(config, workdir, tmp_path / "three.npz")


def test_modes_are_registered_for_the_main_cli():
    from scripts.modes import MODES

    assert set(app.APPLICATION_MODES) == {"denoise", "edit", "encode", "decode", "interpolate", "anomaly"}
    for name, mode in app.APPLICATION_MODES.items():
        assert MODES[name] is mode
    assert pathlib.Path(app.__file__).name == "application_modes.py"
