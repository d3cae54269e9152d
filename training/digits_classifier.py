"""A small CNN classifier of the 8x8 digits whose penultimate layer is the feature space of
"digits-FID" (the role Inception-v3 plays for photos, Heusel et al. 2017).

It is trained once on the digits training split (a minute on a CPU), stored with orbax
(no pickle) with a JSON record of its test accuracy, and reused from that directory.
"""
from __future__ import annotations

import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from training.data import open_split, preprocess_from_config
from training.metrics import fingerprint_of

PARAMS_DIR = "params"
INFO_FILE = "classifier.json"
FEATURE_DIM = 64


class DigitsClassifier(nn.Module):
    """`images [B, 8, 8, 1]` in [0, 1] -> `(logits [B, 10], features [B, FEATURE_DIM])`."""

    features: int = FEATURE_DIM
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = nn.gelu(nn.Conv(32, (3, 3))(x))
        x = nn.gelu(nn.Conv(64, (3, 3), strides=(2, 2))(x))
        x = jnp.reshape(x, (x.shape[0], -1))
        features = nn.gelu(nn.Dense(self.features)(x))
        return nn.Dense(self.num_classes)(features), features


def train_classifier(images: np.ndarray, labels: np.ndarray, *, steps: int = 600, batch_size: int = 128,
                     learning_rate: float = 2e-3, seed: int = 0):
    """Parameters of a `DigitsClassifier` fitted by Adam on `images [N, 8, 8, 1]`, `labels [N]`."""
    model = DigitsClassifier()
    key = jax.random.PRNGKey(seed)
    init_key, data_key = jax.random.split(key)
    params = model.init(init_key, jnp.zeros((1, *images.shape[1:]), jnp.float32))["params"]
    optimizer = optax.adam(learning_rate)
    opt_state = optimizer.init(params)
    images = jnp.asarray(images, jnp.float32)
    labels = jnp.asarray(labels, jnp.int32)

    def loss_fn(p, idx):
        logits, _ = model.apply({"params": p}, images[idx])
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()

    def step(carry, key):
        p, s = carry
        idx = jax.random.randint(key, (batch_size,), 0, images.shape[0])
        grads = jax.grad(loss_fn)(p, idx)
        updates, s = optimizer.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.jit(lambda c, k: jax.lax.scan(step, c, k))((params, opt_state),
                                                                    jax.random.split(data_key, steps))
    return params


def accuracy(params, images: np.ndarray, labels: np.ndarray) -> float:
    logits, _ = DigitsClassifier().apply({"params": params}, jnp.asarray(images, jnp.float32))
    return float(np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(labels)))


class DigitsFeatureExtractor:
    """`FeatureExtractor` for 8x8 digits: penultimate-layer activations of the classifier."""

    name = "digits"

    def __init__(self, params):
        self.params = params
        self.fingerprint = fingerprint_of("digits", params)
        self._features = jax.jit(lambda p, x: DigitsClassifier().apply({"params": p}, x)[1])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[1:] != (8, 8, 1):
            raise ValueError(f"the digits feature extractor takes [B, 8, 8, 1] images, got {images.shape}")
        chunks = [np.asarray(self._features(self.params, images[i:i + 500])) for i in range(0, len(images), 500)]
        return np.concatenate(chunks)


def save(directory: str | pathlib.Path, params, info: dict) -> None:
    directory = pathlib.Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / PARAMS_DIR, params, force=True)
    (directory / INFO_FILE).write_text(json.dumps(info, indent=2))


def load(directory: str | pathlib.Path):
    """The stored parameters, or None when `directory` holds no complete classifier."""
    directory = pathlib.Path(directory).absolute()
    if not (directory / INFO_FILE).exists() or not (directory / PARAMS_DIR).exists():
        return None
    abstract = jax.eval_shape(lambda: DigitsClassifier().init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))["params"])
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(directory / PARAMS_DIR, abstract)


def _split_arrays(config: ml_collections.ConfigDict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All images of a digits split in [0, 1] `[N, 8, 8, 1]` and their labels `[N]`."""
    source = open_split(config, split)
    select = preprocess_from_config(config, evaluation=True).select
    examples = [select(source[i]) for i in range(len(source))]
    images = np.stack([e["image"] for e in examples]).astype(np.float32) / 255.0
    return images, np.asarray([e["label"] for e in examples])


def get_or_train(directory: str | pathlib.Path, config: ml_collections.ConfigDict, *, steps: int = 600
                 ) -> tuple[DigitsFeatureExtractor, dict]:
    """The classifier stored in `directory`, trained and stored there first if absent.

    Returns the feature extractor and its record (test accuracy, training steps).
    """
    if config.data.dataset != "digits":
        raise ValueError(f"the digits classifier needs data.dataset='digits', got {config.data.dataset!r}")
    directory = pathlib.Path(directory)
    params = load(directory)
    if params is None:
        logging.info("Training the digits classifier for digits-FID into %s", directory)
        train_images, train_labels = _split_arrays(config, "train")
        test_images, test_labels = _split_arrays(config, "test")
        params = train_classifier(train_images, train_labels, steps=steps)
        info = {"test_accuracy": accuracy(params, test_images, test_labels), "steps": steps,
                "feature_dim": FEATURE_DIM}
        save(directory, params, info)
    info = json.loads((pathlib.Path(directory) / INFO_FILE).read_text())
    return DigitsFeatureExtractor(params), info
