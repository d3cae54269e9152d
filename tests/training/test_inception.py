"""The FID Inception-v3: same network and outputs as pytorch-fid's, weights from a checked .npz,
and the Inception Score against hand-computed values.

No real weights can be downloaded here, so the network is compared with pytorch-fid itself on
deterministic random weights: inception_reference/reference.npz holds pytorch-fid 0.3.0's
pool3 features and logits for them (made by inception_reference/make_reference.py under torch).
"""
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from training import inception
from training.metrics import inception_score, sample_metrics

REFERENCE_DIR = pathlib.Path(__file__).parent / "inception_reference"
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def random_state_dict(random_inception_weights):
    return random_inception_weights[0]


@pytest.fixture(scope="module")
def weights_file(random_inception_weights):
    return random_inception_weights[1]


def test_parameter_count_is_torchvisions_inception_v3_without_aux_head_with_1008_classes():
    # torchvision's inception_v3: 27,161,264 parameters; its auxiliary head (1x1 conv 768->128 + BN,
    # 5x5 conv 128->768 + BN, 768->1000 dense) has 3,326,696; 1008 classes add 8 * (2048 + 1).
    params = jax.eval_shape(inception.init_variables, jax.random.key(0))["params"]
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == 27_161_264 - 3_326_696 + 8 * 2049


def test_features_and_logits_equal_pytorch_fids_on_the_same_weights(random_state_dict, inception_reference):
    reference = np.load(REFERENCE_DIR / "reference.npz")
    extractor = inception.InceptionFeatureExtractor(inception.variables_from_state_dict(random_state_dict),
                                                    batch_size=3)
    for name, images in inception_reference.reference_images().items():  # upsampled non-square, and 299x299
        features, logits = extractor.features_and_logits(images)
        for ours, theirs in ((features, reference[f"{name}_features"]), (logits, reference[f"{name}_logits"])):
            assert np.abs(theirs).mean() > 1.0  # the random network is not degenerate
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max(), err_msg=name)
    assert features.shape == (2, inception.FEATURE_DIM) and logits.shape == (2, inception.NUM_CLASSES)


def test_state_dict_round_trip_is_exact():
    rng = np.random.default_rng(1)
    variables = jax.tree.map(lambda leaf: rng.standard_normal(leaf.shape).astype(np.float32),
                             jax.eval_shape(inception.init_variables, jax.random.key(0)))
    back = inception.variables_from_state_dict(inception.state_dict_from_variables(variables))
    assert jax.tree.structure(back) == jax.tree.structure(variables)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(back), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_grey_images_are_read_as_rgb_and_bad_images_are_refused(random_state_dict):
    extractor = inception.InceptionFeatureExtractor(inception.variables_from_state_dict(random_state_dict),
                                                    batch_size=4, image_size=inception.MIN_IMAGE_SIZE)
    grey = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(extractor(grey), extractor(np.repeat(grey, 3, axis=-1)), rtol=1e-6, atol=1e-6)
    # Chunking with a padded last batch gives each image the same features as alone.
    np.testing.assert_allclose(extractor(grey)[2:], extractor(grey[2:]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"takes \[N, H, W, 1 or 3\] images, got \(3, 8, 8\)"):
        extractor(grey[..., 0])
    with pytest.raises(ValueError, match="image_size must be >= 75, got 32"):
        inception.InceptionFeatureExtractor({}, image_size=32)


def test_load_weights_reads_the_npz_and_ignores_batch_counters(weights_file, random_state_dict, tmp_path):
    with_counters = tmp_path / "with_counters.npz"
    np.savez(with_counters, **random_state_dict, **{"fc.num_batches_tracked": np.array(0),
                                                    "Mixed_5b.branch1x1.bn.num_batches_tracked": np.array(3)})
    a, b = inception.load_weights(weights_file), inception.load_weights(with_counters)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_bad_weights_files_are_refused_with_the_reason(random_state_dict, tmp_path):
    with pytest.raises(FileNotFoundError, match="Inception weights file .*nowhere.npz' does not exist"):
        inception.load_weights(tmp_path / "nowhere.npz")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{"fc.weight": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match="cannot read Inception weights .* as an .npz of plain arrays"):
        inception.load_weights(pickled)
    not_zip = tmp_path / "text.npz"
    not_zip.write_text("not weights")
    with pytest.raises(ValueError, match="cannot read Inception weights"):
        inception.load_weights(not_zip)
    broken = dict(random_state_dict)
    del broken["Mixed_7c.branch_pool.conv.weight"]
    broken["fc.weight"] = broken["fc.weight"][:1000]  # torchvision's 1000-class head
    broken["AuxLogits.fc.weight"] = np.zeros((1000, 768), np.float32)
    with pytest.raises(ValueError) as error:
        inception.variables_from_state_dict(broken, source="'x.npz'")
    assert str(error.value) == (
        "'x.npz' is not an FID Inception-v3 state dict: 1 missing keys (e.g. Mixed_7c.branch_pool.conv.weight); "
        "1 unexpected keys (e.g. AuxLogits.fc.weight); fc.weight: shape (1000, 2048) does not convert to "
        "(2048, 1008)")


def test_inception_score_closed_forms():
    confident = 50.0 * np.eye(10)[np.arange(100) % 10]  # each class predicted surely, equally often
    assert inception_score(confident, num_splits=1)[0] == pytest.approx(10.0, rel=1e-9)
    mean, std = inception_score(confident, num_splits=10)
    assert mean == pytest.approx(10.0, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    assert inception_score(np.tile([[1.0, -2.0, 0.5]], (20, 1)), num_splits=2)[0] == pytest.approx(1.0)
    # p(y|x) = (1/2, 1/2) and (1, 0): p(y) = (3/4, 1/4), mean KL = (ln(2/3)/2 + ln 2 / 2 + ln(4/3)) / 2.
    kl = (0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25) + np.log(1 / 0.75)) / 2
    assert inception_score(np.array([[0.0, 0.0], [60.0, 0.0]]), num_splits=1)[0] == pytest.approx(np.exp(kl), rel=1e-9)
    with pytest.raises(ValueError, match="N >= num_splits=10"):
        inception_score(np.zeros((5, 3)))


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # 8 samples in 2048 dimensions
@pytest.mark.slow
def test_sample_metrics_report_inception_score_with_an_inception_extractor(random_state_dict):
    extractor = inception.InceptionFeatureExtractor(inception.variables_from_state_dict(random_state_dict),
                                                    batch_size=8, image_size=inception.MIN_IMAGE_SIZE)
    rng = np.random.default_rng(0)
    real, fake = rng.random((8, 8, 8, 1), dtype=np.float32), rng.random((8, 8, 8, 1), dtype=np.float32)
    metrics = sample_metrics(extractor, real, fake, rng=np.random.default_rng(0))
    assert metrics["fid"] > 1.0 and np.isfinite(metrics["kid"])
    _, logits = extractor.features_and_logits(fake)
    assert (metrics["inception_score"], metrics["inception_score_std"]) == inception_score(logits, num_splits=8)


def _convert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.convert_inception_weights", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def _convert_in_process(*args: str) -> tuple[int, str]:
    """The converter's `main` in this process (a fresh one costs seconds of imports): `(exit status,
    message)` as `python -m` ends, 1 and the message for a `SystemExit(message)` or an exception."""
    from scripts import convert_inception_weights

    try:
        return convert_inception_weights.main(list(args)), ""
    except SystemExit as stop:
        return (1, stop.code) if isinstance(stop.code, str) else (stop.code, "")
    except Exception as error:  # noqa: BLE001 - what a traceback would end with
        return 1, f"{type(error).__name__}: {error}"


def test_converter_checks_and_writes_plain_arrays_and_never_overwrites(weights_file, tmp_path):
    out = tmp_path / "converted.npz"
    result = _convert(str(weights_file), str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(out, allow_pickle=False) as npz, np.load(weights_file) as source:
        assert sorted(npz.files) == sorted(source.files)
        np.testing.assert_array_equal(npz["Mixed_6e.branch7x7dbl_5.conv.weight"],
                                      source["Mixed_6e.branch7x7dbl_5.conv.weight"])
    before = out.read_bytes()
    # The refusals in-process: the process run above showed how the command ends.
    status, message = _convert_in_process(str(weights_file), str(out))
    assert status == 1 and "exists; pass --force to overwrite it" in message
    assert out.read_bytes() == before
    truncated = tmp_path / "truncated.npz"
    with np.load(weights_file) as source:
        np.savez(truncated, **{k: source[k] for k in source.files if not k.startswith("fc.")})
    status, message = _convert_in_process(str(truncated), str(tmp_path / "never.npz"))
    assert status == 1 and "2 missing keys (e.g. fc.bias, fc.weight)" in message
    assert not (tmp_path / "never.npz").exists()


def test_converter_reads_pytorch_state_dicts(random_state_dict, tmp_path):
    torch = pytest.importorskip("torch")
    pth = tmp_path / "pt_inception.pth"
    state = {k: torch.from_numpy(v) for k, v in random_state_dict.items()}
    state["Conv2d_1a_3x3.bn.num_batches_tracked"] = torch.tensor(0)
    torch.save(state, pth)
    status, message = _convert_in_process(str(pth), str(tmp_path / "out.npz"))  # torch is imported here already
    assert status == 0, message
    with np.load(tmp_path / "out.npz") as npz:
        assert len(npz.files) == len(random_state_dict)
        np.testing.assert_array_equal(npz["fc.weight"], random_state_dict["fc.weight"])


SHARDED_SCRIPT = """
import jax, numpy as np
from training import inception
assert jax.device_count() == 4
variables = inception.load_weights({path!r})
one = inception.InceptionFeatureExtractor(variables, batch_size=6, image_size=75,
                                          mesh=jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",)))
four = inception.InceptionFeatureExtractor(variables, batch_size=6, image_size=75)
assert four.batch_size == 8, four.batch_size  # rounded up to a multiple of the 4 devices
images = np.random.default_rng(0).random((10, 16, 16, 3), dtype=np.float32)
np.testing.assert_allclose(four(images), one(images), rtol=1e-5, atol=1e-4)
features, _ = four._apply(four.variables, jax.device_put(images[:8], four._images_sharding))
assert features.sharding.is_equivalent_to(four._images_sharding, 2), features.sharding  # split, not gathered
print("OK")
"""


@pytest.mark.slow
def test_features_are_computed_data_parallel_and_equal_one_devices(run_on_four_devices, weights_file):
    out = run_on_four_devices(SHARDED_SCRIPT.format(path=str(weights_file)), timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
