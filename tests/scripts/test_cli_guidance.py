"""Class-conditional sampling from the CLI: `score-sde sample --labels=3,7 | all` under
`sampling.guidance` (cfg from a model trained with label dropout, classifier from
`score-sde train_guidance_classifier`), and bad labels stopped with one line."""
import json

import numpy as np
import pytest
from test_cli import OVERRIDES, score_sde

# Five CLI processes: with the slow checks. The guidance wiring itself is tested in-process in
# tests/training/test_guidance_wiring.py.
pytestmark = pytest.mark.slow

CONDITIONAL = [*OVERRIDES, "model.num_classes=10", "training.label_dropout=0.2", "sampling.guidance=cfg",
               "sampling.guidance_weight=1.0", "classifier.n_iters=4", "classifier.batch_size=16",
               "classifier.hidden_dims=(8,8)", "classifier.nf=8"]


def _ok(mode, workdir, *extra, overrides=CONDITIONAL):
    result = score_sde(mode, workdir, *extra, overrides=overrides)
    assert result.returncode == 0, f"score-sde {mode} failed:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cond") / "run"
    _ok("train", path)
    return path


def test_cfg_samples_carry_the_requested_labels(workdir):
    record = _ok("sample", workdir, "--labels=3,7", "--num_samples=6")
    assert (record["labels"], record["guidance"], record["guidance_weight"]) == ([3, 7], "cfg", 1.0)
    with np.load(record["npz"]) as archive:
        assert archive["labels"].tolist() == [3, 7, 3, 7, 3, 7]
        assert archive["samples"].shape == (6, 8, 8, 1) and np.isfinite(archive["samples"]).all()


def test_classifier_guidance_uses_the_trained_noise_conditional_classifier(workdir):
    record = _ok("train_guidance_classifier", workdir)
    assert record["step"] == 4 and record["num_classes"] == 10
    assert (workdir / "guidance_classifier" / "checkpoints-meta" / "4").is_dir()
    assert set(record) >= {"test_accuracy_t0.1", "test_accuracy_t1"}
    sampled = _ok("sample", workdir, "--labels=all", "--num_samples=10",
                  overrides=[*CONDITIONAL[:-6], "sampling.guidance=classifier", "sampling.guidance_weight=2.0",
                             *CONDITIONAL[-4:]])
    assert sampled["labels"] == list(range(10)) and sampled["guidance"] == "classifier"


@pytest.mark.parametrize("labels, message", [("12", "outside the model's classes 0..9"),
                                             ("three", "comma-separated class numbers")])
def test_bad_labels_stop_with_one_line(workdir, labels, message):
    result = score_sde("sample", workdir, f"--labels={labels}", overrides=CONDITIONAL)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert message in result.stderr
