"""A damaged digits-classifier cache (the feature space of digits-FID) is trained again with a
warning, not a crash of `evaluate` / `demo`. (The FID reference-feature cache has the same
guarantee, tested in test_evaluation.py.) The training itself is replaced by the network's
initialisation: what is tested is the cache, not the classifier."""
import logging

import jax
import jax.numpy as jnp
import numpy as np

from configs import load_config
from training import digits_classifier


def _init_params():
    return digits_classifier.DigitsClassifier().init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))["params"]


def test_a_damaged_classifier_cache_is_rebuilt_with_a_warning(tmp_path, caplog, monkeypatch):
    trainings = []
    monkeypatch.setattr(digits_classifier, "train_classifier",
                        lambda images, labels, steps: trainings.append(steps) or _init_params())
    config = load_config("configs/digits.py")
    extractor, info = digits_classifier.get_or_train(tmp_path, config, steps=5)
    images = np.random.default_rng(0).random((3, 8, 8, 1)).astype(np.float32)

    (tmp_path / digits_classifier.INFO_FILE).write_text('{"test_accuracy": ')  # torn record
    with caplog.at_level(logging.WARNING):
        assert digits_classifier.load(tmp_path) is None
    assert "is damaged (JSONDecodeError" in caplog.text

    for f in (tmp_path / digits_classifier.PARAMS_DIR).rglob("*"):  # and garbled weights
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(b"garbage")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rebuilt, rebuilt_info = digits_classifier.get_or_train(tmp_path, config, steps=5)
    assert "is damaged" in caplog.text and "training it again" in caplog.text
    assert trainings == [5, 5] and rebuilt_info == info
    np.testing.assert_allclose(rebuilt(images), extractor(images), rtol=1e-5, atol=1e-6)
    assert digits_classifier.load(tmp_path) is not None  # stored again, intact
