"""A damaged digits-classifier cache (the feature space of digits-FID) is trained again with a
warning, not a crash of `evaluate` / `demo`. (The FID reference-feature cache has the same
guarantee, tested in test_evaluation.py.)"""
import logging

import numpy as np

from configs import load_config
from training import digits_classifier


def _damage_params(directory) -> None:
    for f in (directory / digits_classifier.PARAMS_DIR).rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(b"garbage")


def _damage_info(directory) -> None:
    (directory / digits_classifier.INFO_FILE).write_text('{"test_accuracy": ')


def test_a_damaged_classifier_cache_is_rebuilt_with_a_warning(tmp_path, caplog):
    config = load_config("configs/digits.py")
    extractor, info = digits_classifier.get_or_train(tmp_path, config, steps=5)
    images = np.random.default_rng(0).random((3, 8, 8, 1)).astype(np.float32)
    for damage in (_damage_params, _damage_info):
        damage(tmp_path)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            rebuilt, rebuilt_info = digits_classifier.get_or_train(tmp_path, config, steps=5)
        assert "is damaged" in caplog.text and "training it again" in caplog.text, damage.__name__
        assert rebuilt_info == info  # same steps, data and seed: the same classifier
        np.testing.assert_allclose(rebuilt(images), extractor(images), rtol=1e-5, atol=1e-6)
        assert digits_classifier.load(tmp_path) is not None  # and it is stored again
