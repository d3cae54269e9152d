"""Digits with the continuous VE SDE: sigma_max 12 (about the largest distance between two
training images scaled to [0, 1], Song & Ermon 2020, technique 1); otherwise as `digits`."""
from configs import digits, families


def get_config():
    config = families.ve(digits.get_config())
    config.model.sigma_max = 12.0
    return config
