"""The model registry: score networks by name (`MODELS.get("ncsnpp")`)."""
from sde_lib.registry import Registry

MODELS = Registry("model")
"""flax.linen Module classes, called `model.apply({'params': p}, x, noise_labels, train=...)`."""
