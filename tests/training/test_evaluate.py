"""The evaluation protocol as a library (no flags): a split or feature space that cannot be used is
named before any work, with the config key or argument that gave it."""
import pytest

from configs import load_config
from training import evaluate


def _digits(*overrides):
    return load_config("configs/digits.py", list(overrides))


@pytest.mark.parametrize("overrides, split, source", [
    (["eval.fid_dataset=tset"], None, "eval.fid_dataset"),
    (["eval.enable_sampling=false"], "tset", "split"),
    (["eval.enable_sampling=false", "eval.bpd_dataset=tset"], None, "eval.bpd_dataset"),
])
def test_a_misspelled_split_is_named_before_any_work(tmp_path, overrides, split, source):
    workdir = tmp_path / "run"  # holds no checkpoint: restoring would fail with another error
    with pytest.raises(evaluate.SplitError) as error:
        evaluate.evaluate(_digits(*overrides), workdir, split=split)
    assert error.value.source == source and error.value.split == "tset"
    assert str(error.value).startswith(f"{source}='tset' cannot be read from data set 'digits': ")
    assert not workdir.exists()


def test_likelihood_names_its_split_before_restoring(tmp_path):
    with pytest.raises(evaluate.SplitError, match="^split='tset' cannot be read"):
        evaluate.likelihood_to_file(_digits(), tmp_path, "tset")


@pytest.mark.parametrize("weights, message", [
    (None, "needs inception_weights"),
    ("missing.npz", "Inception weights file"),
])
def test_inception_without_usable_weights_is_a_feature_extractor_error(tmp_path, weights, message):
    path = None if weights is None else tmp_path / weights
    with pytest.raises(evaluate.FeatureExtractorError, match=message):
        evaluate.feature_extractor("inception", _digits(), inception_weights=path)


def test_an_unknown_feature_extractor_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"known: \['digits', 'inception'\]"):
        evaluate.feature_extractor("clip", _digits())
