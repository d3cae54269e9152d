"""The evaluation protocol of a trained run, callable from a notebook; the CLI modes only adapt it.

`sample_to_files(config, workdir)`: samples of the newest checkpoint -> `samples/`.
`likelihood_to_file(config, workdir, split)`: bits/dim of a split -> `eval/bpd_<split>_step<k>.json`.
`evaluate(config, workdir, ...)`: FID/KID (and IS) of samples against `eval.fid_dataset`, plus
bits/dim -> `eval/metrics_step<k>.json`.

This is the one module of the training layer that reads the config's `eval`/`sampling` sections
for evaluation; it passes explicit arguments to `training.sampling` (drawing samples),
`training.likelihood` (bits/dim) and `training.metrics` (FID/KID/IS, reference-feature cache),
and restores through `training.experiment.load_trained`. Errors a user can fix raise
`SplitError` (a split that cannot be read) or `FeatureExtractorError` (no usable weights) before
any other work.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time

import jax
import ml_collections
import numpy as np

from configs import builders
from training import digits_classifier
from training.conditioning import Guidance, label_classes, label_count, parse_labels
from training.data import build_dataset, get_data_inverse_scaler, load_uint8_images, open_split
from training.datasets import is_point_dataset, quantization_levels
from training.errors import UsageError
from training.experiment import Experiment, load_trained
from training.files import atomic_write_json
from training.guidance_classifier import load_guidance_classifier
from training.inception import InceptionFeatureExtractor
from training.likelihood import check_max_examples, split_likelihood
from training.logging import save_image_grid, save_scatter
from training.metrics import FeatureExtractor, reference_features, sample_metrics
from training.sampling import generate_samples
from training.seeds import parse_seeds, sample_seeds
from training.state import Params

SUMMARY_DIR = "eval"
FEATURE_EXTRACTORS = ("digits", "inception")


class SplitError(UsageError):
    """A data split named by a config key or an argument (`source`) cannot be read."""

    def __init__(self, source: str, split: str, dataset: str, reason: BaseException):
        self.source, self.split, self.dataset, self.reason = source, split, dataset, reason
        super().__init__()

    def __str__(self) -> str:
        return f"{self.source}={self.split!r} cannot be read from data set {self.dataset!r}: {self.reason}"


class FeatureExtractorError(UsageError):
    """The feature space of FID/KID cannot be built (e.g. a missing or malformed weights file)."""


def cache_root() -> pathlib.Path:
    """`$SCORE_SDE_CACHE`, by default ~/.cache/score_sde_jax."""
    return pathlib.Path(os.environ.get("SCORE_SDE_CACHE", "~/.cache/score_sde_jax")).expanduser()


def default_classifier_dir() -> pathlib.Path:
    return cache_root() / "digits_classifier"


def default_reference_cache_dir() -> pathlib.Path:
    return cache_root() / "fid_reference"


def open_split_named(config: ml_collections.ConfigDict, split: str, source: str):
    """`open_split`, raising `SplitError` naming the config key or argument `source` that gave `split`."""
    try:
        return open_split(config, split)
    except (ValueError, KeyError, FileNotFoundError) as error:
        raise SplitError(source, split, config.data.dataset, error) from error


def feature_extractor(name: str, config: ml_collections.ConfigDict, *,
                      classifier_dir: str | pathlib.Path | None = None,
                      inception_weights: str | pathlib.Path | None = None) -> FeatureExtractor:
    """The FID/KID feature space by name: `digits` (the classifier stored in `classifier_dir`,
    trained there on first use) or `inception` (weights from the .npz `inception_weights`)."""
    if name == "digits":
        directory = classifier_dir or default_classifier_dir()
        if jax.process_count() > 1 and digits_classifier.load(directory) is None:
            # training it on every host would have them all write the same directory at once
            raise FeatureExtractorError(f"no digits classifier in {directory}: with several processes, train it "
                                        "first with one (score-sde train_classifier --classifier_dir=...)")
        extractor, _ = digits_classifier.get_or_train(directory, config)
        return extractor
    if name == "inception":
        if not inception_weights:
            raise FeatureExtractorError("the inception feature extractor needs inception_weights=<.npz> (convert "
                                        "pytorch-fid's weights with scripts/convert_inception_weights.py)")
        try:
            return InceptionFeatureExtractor.from_file(inception_weights, batch_size=config.eval.batch_size)
        except (FileNotFoundError, ValueError) as error:
            raise FeatureExtractorError(str(error)) from error
    raise ValueError(f"unknown feature extractor {name!r}; known: {list(FEATURE_EXTRACTORS)}")


def split_bits_per_dim(config: ml_collections.ConfigDict, exp: Experiment, params: Params, split: str,
                       rng: jax.Array, *, max_examples: int | None = None) -> dict:
    """Bits/dim of `split` (nats/dim for 2-D points) with the settings of `config`: the split in
    its stored order, `eval.batch_size` at a time, `eval.num_probes` probes, solver tolerances
    `sampling.rtol` / `sampling.atol` (`training.likelihood.split_likelihood`).

    Images are uniformly dequantised data (Theis et al. 2016; always, as in the 2021 code,
    whatever `data.uniform_dequantization` says for training) in bins of the data set's L levels
    (256; 17 for the digits), with the bin width of the model's data range (2/L if
    `data.centered`, else 1/L; `samplers.likelihood.bits_per_dim`): bits/dim of the L-level data.
    2-D point data are continuous: no dequantisation, nats/dim.
    """
    check_max_examples(max_examples)
    points = is_point_dataset(config.data.dataset)
    data_config = config.copy_and_resolve_references()
    data_config.data.uniform_dequantization = not points
    batch_size = min(config.eval.batch_size, max_examples or config.eval.batch_size)
    batch_size += -batch_size % exp.mesh.size
    ds = build_dataset(data_config, split, batch_size=batch_size, seed=config.seed, shuffle=False, evaluation=True,
                       drop_remainder=False)
    bin_width = None if points else (2.0 if config.data.centered else 1.0) / quantization_levels(config.data.dataset)
    record = split_likelihood(exp, params, ds, rng, batch_size=batch_size, num_probes=config.eval.num_probes,
                              rtol=config.sampling.rtol, atol=config.sampling.atol, bin_width=bin_width,
                              max_examples=max_examples, max_steps=config.sampling.max_steps)
    return record if points else {**record, "levels": quantization_levels(config.data.dataset)}


def _write_json(path: pathlib.Path, record: dict) -> pathlib.Path:
    """Write `record` from the first process only (every process holds the same record)."""
    if jax.process_index() == 0:
        atomic_write_json(path, record)
    return path


def sampling_guidance(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> tuple[Guidance, Params | None]:
    """`(Guidance, classifier params or None)` of `sampling.guidance`; the classifier of classifier
    guidance is the one `train_guidance_classifier` trained in `workdir`."""
    s = config.sampling
    if s.guidance != "classifier":
        return Guidance(s.guidance, s.guidance_weight), None
    classifier, params = load_guidance_classifier(config, workdir)
    return Guidance("classifier", s.guidance_weight, classifier), params


def sample_to_files(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                    num_samples: int | None = None, labels: str | None = None) -> dict:
    """Samples of the checkpoint's (`eval.checkpoint`, 0 = newest) EMA parameters with the config's
    sampler as `samples/<method>_step<k>.{png,npz}`; `num_samples` defaults to `sampling.batch_size`.
    With `labels` ('3,7' or 'all', cycled over the samples) class-conditional samples under
    `sampling.guidance`; the labels are saved in the .npz. Raises LabelError for bad labels."""
    workdir = pathlib.Path(workdir)
    num = num_samples or config.sampling.batch_size
    label_array = None if labels is None else parse_labels(labels, label_count(config), num)
    guidance, classifier_params = sampling_guidance(config, workdir) if labels is not None else (None, None)
    exp, state = load_trained(config, workdir, step=config.eval.checkpoint)
    step = int(jax.device_get(state.step))
    start = time.time()
    samples, nfe = generate_samples(exp, builders.build_sampler(config, exp.sde), state.ema_params, num,
                                    jax.random.fold_in(exp.keys.sample, step), batch_size=config.sampling.batch_size,
                                    inverse_scaler=get_data_inverse_scaler(config), labels=label_array,
                                    guidance=guidance, classifier_params=classifier_params)
    seconds = time.time() - start
    stem = workdir / "samples" / f"{config.sampling.method}_step{step}"
    record = {"step": step, "num_samples": int(len(samples)), "nfe": nfe, "seconds": seconds,
              "sampler": config.sampling.method, "png": str(stem.with_suffix(".png").absolute()),
              "npz": str(stem.with_suffix(".npz").absolute())}
    if label_array is not None:
        record.update({"labels": sorted(set(label_array.tolist())), "guidance": config.sampling.guidance,
                       "guidance_weight": config.sampling.guidance_weight})
    if jax.process_index() != 0:  # every process holds the samples; one writes them
        return record
    stem.parent.mkdir(parents=True, exist_ok=True)
    picture = save_scatter(stem.with_suffix(".png"), samples) if samples.ndim == 2 else \
        save_image_grid(stem.with_suffix(".png"), samples)
    extra = {} if label_array is None else {"labels": label_array}
    np.savez(stem.with_suffix(".npz"), samples=samples, nfe=nfe, step=step, **extra)
    return {**record, "png": str(picture.absolute())}


def sample_seeds_to_files(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, seeds_text: str,
                          labels: str | None = None) -> dict:
    """The samples of `seeds_text` (`training.seeds.parse_seeds`: "0-49999", "1,5,7") of the checkpoint's
    EMA parameters, one file per seed under `samples/seeds_<method>_step<k>/` (`training.seeds`); a
    rerun draws only the seeds not written yet. With `labels` ('3,7' or 'all') seed k is of the
    (k mod n)-th named class under `sampling.guidance`, whatever the seeds drawn with it. Raises
    `training.seeds.SeedsError` for bad seeds, LabelError for bad labels."""
    workdir = pathlib.Path(workdir)
    seeds = parse_seeds(seeds_text)
    classes = None if labels is None else label_classes(labels, label_count(config))
    guidance, classifier_params = sampling_guidance(config, workdir) if labels is not None else (None, None)
    exp, state = load_trained(config, workdir, step=config.eval.checkpoint)
    step = int(jax.device_get(state.step))
    sampler = builders.build_sampler(config, exp.sde)

    def generate(seeds, on_batch):
        # one key for every checkpoint: seed k starts from the same noise at every step
        return generate_samples(exp, sampler, state.ema_params, len(seeds), exp.keys.sample, seeds=seeds,
                                on_batch=on_batch, batch_size=config.sampling.batch_size,
                                inverse_scaler=get_data_inverse_scaler(config),
                                labels=None if classes is None else classes[np.asarray(seeds) % len(classes)],
                                guidance=guidance, classifier_params=classifier_params)

    start = time.time()
    record = {"sampler": config.sampling.method, "checkpoint_step": step, "seed": config.seed,
              "sampler_options": _sampler_options(sampler)}
    if classes is not None:
        record.update({"labels": classes.tolist(), "guidance": config.sampling.guidance,
                       "guidance_weight": config.sampling.guidance_weight})
    out_dir = workdir / "samples" / f"seeds_{config.sampling.method}_step{step}"
    return {**sample_seeds(generate, seeds, out_dir, record), "seconds": time.time() - start}


def _sampler_options(sampler) -> dict:
    """The sampler's settings as JSON values (what makes two seed runs differ besides the checkpoint)."""
    options = {f.name: getattr(sampler, f.name) for f in dataclasses.fields(sampler) if f.name != "sde"}
    return json.loads(json.dumps(options, default=str))


def likelihood_to_file(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, split: str | None = None,
                       max_examples: int | None = None) -> dict:
    """Bits/dim of `split` (default `eval.bpd_dataset`) under the checkpoint's EMA parameters ->
    `eval/bpd_<split>_step<k>.json`."""
    workdir = pathlib.Path(workdir)
    open_split_named(config, split or config.eval.bpd_dataset, "split" if split else "eval.bpd_dataset")
    split = split or config.eval.bpd_dataset
    exp, state = load_trained(config, workdir, step=config.eval.checkpoint)
    step = int(jax.device_get(state.step))
    start = time.time()
    result = split_bits_per_dim(config, exp, state.ema_params, split, jax.random.fold_in(exp.keys.eval, step),
                                max_examples=max_examples)
    record = {"step": step, "split": split, **result, "seconds": time.time() - start}
    record["file"] = str(_write_json(workdir / SUMMARY_DIR / f"bpd_{split}_step{step}.json", record).absolute())
    return record


def reference_description(config: ml_collections.ConfigDict, split_size: int, num_real: int) -> dict:
    """What identifies FID's reference images (with the extractor, the key of their cached features)."""
    data = config.data
    return {"dataset": data.dataset, "data_dir": str(pathlib.Path(data.data_dir).absolute()) if data.data_dir else "",
            "split": config.eval.fid_dataset, "split_size": split_size, "num_real": num_real,
            "image_size": data.image_size, "num_channels": data.num_channels}


def evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *, extractor_name: str = "digits",
             classifier_dir: str | pathlib.Path | None = None, inception_weights: str | pathlib.Path | None = None,
             num_samples: int | None = None, split: str | None = None, max_examples: int | None = None,
             reference_cache_dir: str | pathlib.Path | None = None) -> dict:
    """FID and KID (and IS) of samples against `eval.fid_dataset` (if `eval.enable_sampling`), plus
    bits/dim of `split` (default `eval.bpd_dataset`; if `eval.enable_bpd`) -> `eval/metrics_step<k>.json`.

    `num_samples` defaults to `eval.num_samples`; the reference images are the first
    `eval.fid_num_real` (0 = all) of the split, their features cached in `reference_cache_dir`
    (None: not cached). `extractor_name`, `classifier_dir`, `inception_weights`: see
    `feature_extractor`. Samples use `fold_in(keys.sample, step)`, bits/dim `fold_in(keys.eval, step)`.
    """
    workdir = pathlib.Path(workdir)
    # The splits and the feature extractor first: a misspelled split or a missing weights file
    # fails before any other work (the cheap checks before the digits classifier's training).
    if config.eval.enable_sampling:
        split_size = len(open_split_named(config, config.eval.fid_dataset, "eval.fid_dataset"))
    if config.eval.enable_bpd:
        open_split_named(config, split or config.eval.bpd_dataset, "split" if split else "eval.bpd_dataset")
        split = split or config.eval.bpd_dataset
    extractor = None
    if config.eval.enable_sampling:
        extractor = feature_extractor(extractor_name, config, classifier_dir=classifier_dir,
                                      inception_weights=inception_weights)
    exp, state = load_trained(config, workdir, step=config.eval.checkpoint)
    step = int(jax.device_get(state.step))
    record: dict = {"step": step}
    if extractor is not None:
        num = num_samples or config.eval.num_samples
        samples, nfe = generate_samples(exp, builders.build_sampler(config, exp.sde), state.ema_params, num,
                                        jax.random.fold_in(exp.keys.sample, step), batch_size=config.eval.batch_size,
                                        inverse_scaler=get_data_inverse_scaler(config))
        num_real = min(config.eval.fid_num_real or split_size, split_size)
        real_features, cache_file = reference_features(
            extractor, lambda: load_uint8_images(config, config.eval.fid_dataset, max_examples=num_real)
            .astype(np.float32) / 255.0,
            reference_description(config, split_size, num_real), reference_cache_dir)
        record.update(sample_metrics(extractor, None, samples, real_features=real_features,
                                     rng=np.random.default_rng(config.seed)))
        record.update({"feature_extractor": extractor.name, "num_samples": num, "nfe": nfe,
                       "fid_dataset": config.eval.fid_dataset, "num_real": num_real,
                       "reference_features": str(cache_file) if cache_file else None})
    if config.eval.enable_bpd:
        bpd = split_bits_per_dim(config, exp, state.ema_params, split, jax.random.fold_in(exp.keys.eval, step),
                                 max_examples=max_examples)
        record.update({"bpd_split": split, **bpd})
    record["file"] = str(_write_json(workdir / SUMMARY_DIR / f"metrics_step{step}.json", record).absolute())
    return record
