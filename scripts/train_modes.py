"""CLI modes of the training side: train, sample, likelihood, evaluate, train_classifier (the
digits-FID feature classifier), train_guidance_classifier (the noise-conditional classifier of
classifier guidance), demo.

Each mode is a thin adapter: flags in, a library call (`training.train_loop.train`, the
evaluation protocol `training.evaluate`, `training.digits_classifier`), a JSON summary out.
"""
from __future__ import annotations

import contextlib
import json
import pathlib
import time

import jax
import ml_collections
from absl import flags, logging

import configs
from configs import load_config
from scripts.modes import register_mode
from training import digits_classifier, evaluate
from training.errors import UsageError
from training.guidance_classifier import train_guidance_classifier
from training.logging import LOSS_PLOT_FILE
from training.train_loop import NonFiniteLossError, train

flags.DEFINE_integer("max_steps", None, "train: stop at this step (saving a checkpoint) even before n_iters.",
                     lower_bound=1)
flags.DEFINE_float("time_budget_s", None, "train: stop after this many seconds of training (saving a checkpoint).",
                   lower_bound=0.0)
flags.DEFINE_integer("num_samples", None, "sample: how many samples (default sampling.batch_size); "
                     "evaluate: for FID/KID (default eval.num_samples).", lower_bound=1)
flags.DEFINE_string("seeds", None, "sample: seeds to draw, as ranges and lists (0-49999, 1,5,7): sample k comes "
                    "from seed k alone, written once to samples/seeds_<method>_step<k>/; a rerun skips the seeds "
                    "already written (resumable).")
flags.DEFINE_string("split", None, "likelihood/evaluate: data split for bits/dim (default eval.bpd_dataset).")
flags.DEFINE_integer("max_examples", None, "likelihood/evaluate: use at most this many examples of the split.",
                     lower_bound=1)
flags.DEFINE_enum("feature_extractor", "digits", ["digits", "inception"],
                  "evaluate: feature space of FID/KID: the digits classifier (trained on first use) or the "
                  "FID Inception-v3 (needs --inception_weights; also reports the Inception Score).")
flags.DEFINE_string("inception_weights", None, "evaluate: the FID Inception-v3 weights as .npz "
                    "(from scripts/convert_inception_weights.py).")
flags.DEFINE_string("classifier_dir", None, "evaluate/train_classifier/demo: where the digits classifier is "
                    "stored (default $SCORE_SDE_CACHE/digits_classifier, ~/.cache/score_sde_jax by default).")
flags.DEFINE_string("reference_cache_dir", None, "evaluate: where features of FID/KID's reference images are "
                    "cached per extractor and data (default $SCORE_SDE_CACHE/fid_reference; '' disables).")
flags.DEFINE_float("demo_train_minutes", 6.0, "demo: training time budget in minutes.", lower_bound=0.0)
flags.DEFINE_bool("restart_from_scratch", False, "train: start again at step 0 when every checkpoint of the "
                  "workdir is corrupt (they are set aside as <step>.corrupt); without it such a run is refused.")
flags.DEFINE_string("labels", None, "sample: class labels of the samples, e.g. '3,7' (cycled over --num_samples) "
                    "or 'all' (every class in turn), under sampling.guidance; needs model.num_classes > 0 or "
                    "classifier guidance. anomaly: an .npz with labels [B] (1 = anomaly) for the AUROC.")

FLAGS = flags.FLAGS


def _require(config: ml_collections.ConfigDict | None, mode: str) -> ml_collections.ConfigDict:
    if config is None:
        raise ValueError(f"mode {mode!r} needs --config=<config file>")
    return config


def _classifier_dir() -> pathlib.Path:
    return pathlib.Path(FLAGS.classifier_dir) if FLAGS.classifier_dir else evaluate.default_classifier_dir()


def _reference_cache_dir() -> pathlib.Path | None:
    if FLAGS.reference_cache_dir is None:
        return evaluate.default_reference_cache_dir()
    return pathlib.Path(FLAGS.reference_cache_dir) if FLAGS.reference_cache_dir else None


@contextlib.contextmanager
def _user_errors(mode: str):
    """The library's errors about the user's input (usage errors, one line each in `scripts.main`),
    naming the command line's flag where an argument came from it."""
    try:
        yield
    except evaluate.SplitError as error:
        if error.source == "split":
            error.source = "--split"  # the argument is this flag on the command line
        raise


def _report(record: dict) -> None:
    """The mode's result on stdout, as one JSON object (machine-readable)."""
    print(json.dumps(record, indent=2), flush=True)


@register_mode("train", summary="Train a score model, or resume the run in the workdir.",
               flags=("max_steps", "time_budget_s", "restart_from_scratch"))
def train_mode(config, workdir: pathlib.Path) -> int:
    config = _require(config, "train")
    try:
        state = train(config, workdir, max_steps=FLAGS.max_steps, time_budget_s=FLAGS.time_budget_s,
                      restart_from_scratch=FLAGS.restart_from_scratch)
    except NonFiniteLossError as error:
        logging.error("%s", error)
        return 1
    _report({"step": int(jax.device_get(state.step)), "workdir": str(workdir.absolute())})
    return 0


@register_mode("sample", summary="Draw samples from the newest checkpoint (PNG grid and .npz; with --seeds one "
               ".npy per seed, resumable).",
               flags=("num_samples", "labels", "seeds"), reads_checkpoint=True)
def sample_mode(config, workdir: pathlib.Path) -> int:
    config = _require(config, "sample")
    if FLAGS.seeds is None:
        _report(evaluate.sample_to_files(config, workdir, FLAGS.num_samples, labels=FLAGS.labels))
        return 0
    if FLAGS.num_samples is not None:
        raise UsageError("--seeds and --num_samples both say which samples to draw; give one")
    _report(evaluate.sample_seeds_to_files(config, workdir, FLAGS.seeds, labels=FLAGS.labels))
    return 0


@register_mode("train_guidance_classifier",
               summary="Train the noise-conditional classifier of classifier guidance in the workdir.")
def train_guidance_classifier_mode(config, workdir: pathlib.Path) -> int:
    """Train the noise-conditional classifier of classifier guidance on the config's SDE and data
    into `<workdir>/guidance_classifier`; report its test accuracy at several noise levels."""
    record = train_guidance_classifier(_require(config, "train_guidance_classifier"), workdir)
    _report({"workdir": str(workdir.absolute()), **record})
    return 0


@register_mode("likelihood", summary="Bits/dim of a data split under the probability flow.",
               flags=("split", "max_examples"), reads_checkpoint=True)
def likelihood_mode(config, workdir: pathlib.Path) -> int:
    with _user_errors("likelihood"):
        _report(evaluate.likelihood_to_file(_require(config, "likelihood"), workdir, FLAGS.split, FLAGS.max_examples))
    return 0


def _evaluate(config: ml_collections.ConfigDict, workdir: pathlib.Path, mode: str, *, extractor_name: str,
              split: str | None) -> dict:
    """`training.evaluate.evaluate` with the flags' files and sizes."""
    if extractor_name == "inception" and not FLAGS.inception_weights:
        raise UsageError("--feature_extractor=inception needs --inception_weights=<.npz> "
                         "(convert pytorch-fid's weights with scripts/convert_inception_weights.py)")
    with _user_errors(mode):
        return evaluate.evaluate(config, workdir, extractor_name=extractor_name, classifier_dir=_classifier_dir(),
                                 inception_weights=FLAGS.inception_weights, num_samples=FLAGS.num_samples,
                                 split=split, max_examples=FLAGS.max_examples,
                                 reference_cache_dir=_reference_cache_dir())


@register_mode("evaluate", summary="FID/KID (and IS) of samples plus bits/dim of a split.",
               flags=("num_samples", "split", "max_examples", "feature_extractor", "inception_weights",
                      "classifier_dir", "reference_cache_dir"), reads_checkpoint=True)
def evaluate_mode(config, workdir: pathlib.Path) -> int:
    _report(_evaluate(_require(config, "evaluate"), workdir, "evaluate", extractor_name=FLAGS.feature_extractor,
                      split=FLAGS.split))
    return 0


@register_mode("train_classifier", summary="Train (or load) the digits classifier of digits-FID/KID.",
               flags=("classifier_dir",), needs_config=False)
def train_classifier_mode(config, workdir: pathlib.Path) -> int:
    """Train (or load) the digits classifier of digits-FID and report its test accuracy."""
    config = config or load_config(_default_demo_config())
    _, info = digits_classifier.get_or_train(_classifier_dir(), config)
    _report({"classifier_dir": str(_classifier_dir().absolute()), **info})
    return 0


def _default_demo_config() -> pathlib.Path:
    return pathlib.Path(configs.__file__).parent / "digits_demo.py"


@register_mode("demo", summary="Train on the embedded digits for minutes, sample, evaluate.",
               flags=("demo_train_minutes", "num_samples", "max_examples", "classifier_dir"), needs_config=False)
def demo_mode(config, workdir: pathlib.Path) -> int:
    """Train on the embedded digits for a fixed time, then sample, and report bits/dim and digits-FID."""
    config = config or load_config(_default_demo_config())
    start = time.time()
    logging.info("Demo: training on the digits for %.1f minutes into %s", FLAGS.demo_train_minutes, workdir)
    state = train(config, workdir, time_budget_s=FLAGS.demo_train_minutes * 60.0)
    train_seconds = time.time() - start
    grid = evaluate.sample_to_files(config, workdir, 64)
    metrics = _evaluate(config, workdir, "demo", extractor_name="digits", split="test")
    _report({
        "train_steps": int(jax.device_get(state.step)),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - start, 1),
        "test_bits_per_dim": metrics.get("bpd"),
        "test_bits_per_dim_median": metrics.get("bpd_median"),
        "test_bits_per_dim_worst_examples": metrics.get("worst_examples"),
        "test_bits_per_dim_levels": metrics.get("levels"),
        "test_likelihood_failed_solves": metrics.get("num_failed_solves"),
        "test_likelihood_nonfinite_examples": metrics.get("num_nonfinite_examples"),
        "digits_fid": metrics.get("fid"),
        "digits_kid": metrics.get("kid"),
        "written": {
            "workdir": str(workdir.absolute()),
            "checkpoints": str((workdir / "checkpoints").absolute()),
            "sample_grid": grid["png"],
            "samples_npz": grid["npz"],
            "metrics": metrics["file"],
            "loss_curve": str((workdir / LOSS_PLOT_FILE).absolute()),
            "training_log": str((workdir / "metrics.jsonl").absolute()),
            "tensorboard": str((workdir / "tensorboard").absolute()),
        },
    })
    return 0
