"""Digits with the continuous sub-VP SDE (Song et al. 2021, eq. 29); otherwise as `digits`."""
from configs import digits, families


def get_config():
    return families.subvp(digits.get_config())
