"""VP-SDE configs on CIFAR-10 (DDPM, DDPM++), and the CIFAR-10 data settings every reference
config shares."""
import ml_collections


def cifar10(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """CIFAR-10 (TFDS `cifar10`) at 32x32x3 with random flips."""
    config.data.dataset = "cifar10"
    config.data.image_size = 32
    config.data.num_channels = 3
    config.data.random_flip = True
    config.eval.fid_dataset = "train"  # the published FIDs compare 50k samples with the 50k training images
    return config
