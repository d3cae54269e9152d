"""CLI modes of the training side: train, sample, likelihood, evaluate, train_classifier, demo.

Each mode is a thin adapter: flags in, a library call (`training.train_loop`,
`training.evaluation`, `training.digits_classifier`), files and a JSON summary out.
"""
from __future__ import annotations

import json
import os
import pathlib
import sys
import time

import jax
import ml_collections
import numpy as np
from absl import flags, logging

from scripts.modes import register_mode

flags.DEFINE_integer("max_steps", None, "train: stop at this step (saving a checkpoint) even before n_iters.")
flags.DEFINE_float("time_budget_s", None, "train: stop after this many seconds of training (saving a checkpoint).")
flags.DEFINE_integer("num_samples", None, "sample: how many samples (default sampling.batch_size); "
                     "evaluate: for FID/KID (default eval.num_samples).")
flags.DEFINE_string("seeds", None, "sample: seeds to draw, as ranges and lists (0-49999, 1,5,7): sample k comes "
                    "from seed k alone, written once to samples/seeds_<method>_step<k>/; a rerun skips the seeds "
                    "already written (resumable).")
flags.DEFINE_string("split", None, "likelihood/evaluate: data split for bits/dim (default eval.bpd_dataset).")
flags.DEFINE_integer("max_examples", None, "likelihood/evaluate: use at most this many examples of the split.")
flags.DEFINE_enum("feature_extractor", "digits", ["digits", "inception"],
                  "evaluate: feature space of FID/KID: the digits classifier (trained on first use) or the "
                  "FID Inception-v3 (needs --inception_weights; also reports the Inception Score).")
flags.DEFINE_string("inception_weights", None, "evaluate: the FID Inception-v3 weights as .npz "
                    "(from scripts/convert_inception_weights.py).")
flags.DEFINE_string("classifier_dir", None, "evaluate/train_classifier/demo: where the digits classifier is "
                    "stored (default $SCORE_SDE_CACHE/digits_classifier, ~/.cache/score_sde_jax by default).")
flags.DEFINE_string("reference_cache_dir", None, "evaluate: where features of FID/KID's reference images are "
                    "cached per extractor and data (default $SCORE_SDE_CACHE/fid_reference; '' disables).")
flags.DEFINE_float("demo_train_minutes", 6.0, "demo: training time budget in minutes.")

FLAGS = flags.FLAGS

SUMMARY_DIR = "eval"


def _require(config: ml_collections.ConfigDict | None, mode: str) -> ml_collections.ConfigDict:
    if config is None:
        raise ValueError(f"mode {mode!r} needs --config=<config file>")
    return config


def _cache_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get("SCORE_SDE_CACHE", "~/.cache/score_sde_jax")).expanduser()


def _classifier_dir() -> pathlib.Path:
    return pathlib.Path(FLAGS.classifier_dir) if FLAGS.classifier_dir else _cache_root() / "digits_classifier"


def _reference_cache_dir() -> pathlib.Path | None:
    if FLAGS.reference_cache_dir is None:
        return _cache_root() / "fid_reference"
    return pathlib.Path(FLAGS.reference_cache_dir) if FLAGS.reference_cache_dir else None


def _write_json(path: pathlib.Path, record: dict) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    return path


def _report(record: dict) -> None:
    """The mode's result on stdout, as one JSON object (machine-readable)."""
    print(json.dumps(record, indent=2), flush=True)


@register_mode("train")
def train_mode(config, workdir: pathlib.Path) -> int:
    from training.sharding import maybe_initialize_distributed
    from training.train_loop import NonFiniteLossError, train

    config = _require(config, "train")
    maybe_initialize_distributed()
    try:
        state = train(config, workdir, max_steps=FLAGS.max_steps, time_budget_s=FLAGS.time_budget_s)
    except NonFiniteLossError as error:
        logging.error("%s", error)
        return 1
    _report({"step": int(jax.device_get(state.step)), "workdir": str(workdir.absolute())})
    return 0


def sample_to_files(config: ml_collections.ConfigDict, workdir: pathlib.Path, num_samples: int | None) -> dict:
    """Samples of the newest checkpoint's EMA parameters as `samples/<method>_step<k>.{png,npz}`."""
    from training.data import get_data_inverse_scaler
    from training.evaluation import generate_samples, load_trained
    from training.logging import save_image_grid, save_scatter

    exp, state = load_trained(config, workdir, step=config.eval.checkpoint)
    step = int(jax.device_get(state.step))
    num = num_samples or config.sampling.batch_size
    start = time.time()
    samples, nfe = generate_samples(exp, state.ema_params, num, jax.random.fold_in(exp.keys.sample, step),
                                    batch_size=config.sampling.batch_size,
                                    inverse_scaler=get_data_inverse_scaler(config))
    seconds = time.time() - start
    stem = workdir / "samples" / f"{config.sampling.method}_step{step}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    picture = save_scatter(stem.with_suffix(".png"), samples) if samples.ndim == 2 else \
        save_image_grid(stem.with_suffix(".png"), samples)
    np.savez(stem.with_suffix(".npz"), samples=samples, nfe=nfe, step=step)
    return {"step": step, "num_samples": int(len(samples)), "nfe": nfe, "seconds": seconds,
            "sampler": config.sampling.method, "png": str(picture.absolute()),
            "npz": str(stem.with_suffix(".npz").absolute())}


def sample_seeds_to_files(config: ml_collections.ConfigDict, workdir: pathlib.Path, seeds_text: str) -> dict:
    """The samples of `seeds_text` (`training.seeds.parse_seeds`) of the newest checkpoint's EMA
    parameters, one file per seed under `samples/seeds_<method>_step<k>/`; resumes a killed run."""
    from training.data import get_data_inverse_scaler
    from training.evaluation import generate_samples, load_trained
    from training.seeds import parse_seeds, sample_seeds

    seeds = parse_seeds(seeds_text)
    exp, state = load_trained(config, workdir, step=config.eval.checkpoint)
    step = int(jax.device_get(state.step))

    def generate(seeds, on_batch):
        # one key for every seed: seed k's sample is the same at every checkpoint's noise
        return generate_samples(exp, state.ema_params, len(seeds), exp.keys.sample, seeds=seeds, on_batch=on_batch,
                                batch_size=config.sampling.batch_size, inverse_scaler=get_data_inverse_scaler(config))

    start = time.time()
    record = {"sampler": config.sampling.method, "checkpoint_step": step, "seed": config.seed}
    out_dir = workdir / "samples" / f"seeds_{config.sampling.method}_step{step}"
    return {**sample_seeds(generate, seeds, out_dir, record), "seconds": time.time() - start}


@register_mode("sample")
def sample_mode(config, workdir: pathlib.Path) -> int:
    from training.seeds import SeedsError

    config = _require(config, "sample")
    if FLAGS.seeds is not None:
        try:
            _report(sample_seeds_to_files(config, workdir, FLAGS.seeds))
        except SeedsError as error:
            sys.exit(f"score-sde sample: --seeds: {error}")
    else:
        _report(sample_to_files(config, workdir, FLAGS.num_samples))
    return 0


def likelihood_to_file(config: ml_collections.ConfigDict, workdir: pathlib.Path, split: str | None,
                       max_examples: int | None) -> dict:
    """Bits/dim of a split under the newest checkpoint's EMA parameters -> `eval/bpd_<split>.json`."""
    from training.evaluation import bits_per_dim_over_split, load_trained

    _open_split_named(config, split or config.eval.bpd_dataset, "--split" if split else "eval.bpd_dataset")
    split = split or config.eval.bpd_dataset
    exp, state = load_trained(config, workdir, step=config.eval.checkpoint)
    step = int(jax.device_get(state.step))
    start = time.time()
    result = bits_per_dim_over_split(exp, state.ema_params, split, jax.random.fold_in(exp.keys.eval, step),
                                     max_examples=max_examples)
    record = {"step": step, "split": split, **result, "seconds": time.time() - start}
    record["file"] = str(_write_json(workdir / SUMMARY_DIR / f"bpd_{split}_step{step}.json", record).absolute())
    return record


@register_mode("likelihood")
def likelihood_mode(config, workdir: pathlib.Path) -> int:
    _report(likelihood_to_file(_require(config, "likelihood"), workdir, FLAGS.split, FLAGS.max_examples))
    return 0


def feature_extractor(name: str, config: ml_collections.ConfigDict):
    """The FID/KID feature space by name: `digits` (trained on first use) or `inception` (weights
    from the file given by --inception_weights)."""
    if name == "digits":
        from training import digits_classifier

        extractor, _ = digits_classifier.get_or_train(_classifier_dir(), config)
        return extractor
    if name == "inception":
        from training.inception import InceptionFeatureExtractor

        if not FLAGS.inception_weights:
            raise SystemExit("score-sde evaluate: --feature_extractor=inception needs --inception_weights=<.npz> "
                             "(convert pytorch-fid's weights with scripts/convert_inception_weights.py)")
        try:
            return InceptionFeatureExtractor.from_file(FLAGS.inception_weights, batch_size=config.eval.batch_size)
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"score-sde evaluate: {error}") from error
    raise ValueError(f"unknown feature extractor {name!r}; known: ['digits', 'inception']")


def _open_split_named(config: ml_collections.ConfigDict, split: str, source: str):
    """`open_split`, exiting with a message that names the config key or flag giving `split`."""
    from training.data import open_split

    try:
        return open_split(config, split)
    except (ValueError, KeyError, FileNotFoundError) as error:
        raise SystemExit(f"score-sde: {source}={split!r} cannot be read from data set "
                         f"{config.data.dataset!r}: {error}") from error


def _reference_description(config: ml_collections.ConfigDict, split_size: int, num_real: int) -> dict:
    """What identifies FID's reference images (with the extractor, the key of their cached features)."""
    data = config.data
    return {"dataset": data.dataset, "data_dir": str(pathlib.Path(data.data_dir).absolute()) if data.data_dir else "",
            "split": config.eval.fid_dataset, "split_size": split_size, "num_real": num_real,
            "image_size": data.image_size, "num_channels": data.num_channels}


def evaluate_to_file(config: ml_collections.ConfigDict, workdir: pathlib.Path, *, extractor_name: str,
                     num_samples: int | None, split: str | None, max_examples: int | None) -> dict:
    """FID and KID (and IS) of samples against `eval.fid_dataset`, plus bits/dim ->
    `eval/metrics_step<k>.json`. The reference images' features are cached (`reference_features`)."""
    from training import evaluation
    from training.data import get_data_inverse_scaler, load_uint8_images

    # The splits and the feature extractor first: a misspelled split or a missing weights file
    # fails before any other work (the cheap checks before the digits classifier's training).
    if config.eval.enable_sampling:
        split_size = len(_open_split_named(config, config.eval.fid_dataset, "eval.fid_dataset"))
    if config.eval.enable_bpd:
        _open_split_named(config, split or config.eval.bpd_dataset, "--split" if split else "eval.bpd_dataset")
        split = split or config.eval.bpd_dataset
    extractor = feature_extractor(extractor_name, config) if config.eval.enable_sampling else None
    exp, state = evaluation.load_trained(config, workdir, step=config.eval.checkpoint)
    step = int(jax.device_get(state.step))
    record: dict = {"step": step}
    if extractor is not None:
        num = num_samples or config.eval.num_samples
        samples, nfe = evaluation.generate_samples(exp, state.ema_params, num,
                                                   jax.random.fold_in(exp.keys.sample, step),
                                                   batch_size=config.eval.batch_size,
                                                   inverse_scaler=get_data_inverse_scaler(config))
        num_real = min(config.eval.fid_num_real or split_size, split_size)
        real_features, cache_file = evaluation.reference_features(
            extractor, lambda: load_uint8_images(config, config.eval.fid_dataset, max_examples=num_real)
            .astype(np.float32) / 255.0,
            _reference_description(config, split_size, num_real), _reference_cache_dir())
        record.update(evaluation.sample_metrics(extractor, None, samples, real_features=real_features,
                                                rng=np.random.default_rng(config.seed)))
        record.update({"feature_extractor": extractor.name, "num_samples": num, "nfe": nfe,
                       "fid_dataset": config.eval.fid_dataset, "num_real": num_real,
                       "reference_features": str(cache_file) if cache_file else None})
    if config.eval.enable_bpd:
        bpd = evaluation.bits_per_dim_over_split(exp, state.ema_params, split,
                                                 jax.random.fold_in(exp.keys.eval, step), max_examples=max_examples)
        record.update({"bpd_split": split, **bpd})
    record["file"] = str(_write_json(workdir / SUMMARY_DIR / f"metrics_step{step}.json", record).absolute())
    return record


@register_mode("evaluate")
def evaluate_mode(config, workdir: pathlib.Path) -> int:
    _report(evaluate_to_file(_require(config, "evaluate"), workdir, extractor_name=FLAGS.feature_extractor,
                             num_samples=FLAGS.num_samples, split=FLAGS.split, max_examples=FLAGS.max_examples))
    return 0


@register_mode("train_classifier")
def train_classifier_mode(config, workdir: pathlib.Path) -> int:
    """Train (or load) the digits classifier of digits-FID and report its test accuracy."""
    from configs import load_config
    from training import digits_classifier

    config = config or load_config(_default_demo_config())
    _, info = digits_classifier.get_or_train(_classifier_dir(), config)
    _report({"classifier_dir": str(_classifier_dir().absolute()), **info})
    return 0


def _default_demo_config() -> pathlib.Path:
    import configs

    return pathlib.Path(configs.__file__).parent / "digits_demo.py"


@register_mode("demo")
def demo_mode(config, workdir: pathlib.Path) -> int:
    """Train on the embedded digits for a fixed time, then sample, and report bits/dim and digits-FID."""
    from configs import load_config
    from training.logging import LOSS_PLOT_FILE
    from training.train_loop import train

    config = config or load_config(_default_demo_config())
    start = time.time()
    logging.info("Demo: training on the digits for %.1f minutes into %s", FLAGS.demo_train_minutes, workdir)
    state = train(config, workdir, time_budget_s=FLAGS.demo_train_minutes * 60.0)
    train_seconds = time.time() - start
    grid = sample_to_files(config, workdir, 64)
    metrics = evaluate_to_file(config, workdir, extractor_name="digits", num_samples=FLAGS.num_samples,
                               split="test", max_examples=FLAGS.max_examples)
    _report({
        "train_steps": int(jax.device_get(state.step)),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - start, 1),
        "test_bits_per_dim": metrics.get("bpd"),
        "test_bits_per_dim_median": metrics.get("bpd_median"),
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
