"""Per-host input: with P hosts, host h's batch `step` is rows [h B / P, (h + 1) B / P) of the
one-host batch `step` (same shuffle, flips and dequantisation noise, across epochs), and host h
reads only the source examples of those rows."""
import numpy as np
import pytest

from training.data import Preprocess, make_pipeline


class _CountingSource:
    def __init__(self, n: int):
        self.examples = [{"image": np.full((4, 4, 1), i, np.uint8), "label": i} for i in range(n)]
        self.read: list[int] = []

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        self.read.append(index)
        return self.examples[index]


PREPROCESS = Preprocess(image_size=4, num_channels=1, random_flip=True, uniform_dequantization=True)


@pytest.mark.parametrize("num_hosts", [2, 4])
def test_host_batches_are_slices_of_the_global_batch_and_read_only_their_examples(num_hosts):
    source = _CountingSource(37)  # 4 batches of 8 per epoch, 5 examples dropped each epoch
    whole = make_pipeline(source, PREPROCESS, batch_size=8, seed=3)
    hosts = [make_pipeline(_CountingSource(37), PREPROCESS, batch_size=8, seed=3, num_hosts=num_hosts,
                           host_index=h) for h in range(num_hosts)]
    for step in (0, 3, 4, 9, 13):  # steps of the first, second and fourth epochs
        batch = whole[step]
        slices = [host[step] for host in hosts]
        for key in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([s[key] for s in slices]), batch[key])
    host = make_pipeline(source, PREPROCESS, batch_size=8, seed=3, num_hosts=num_hosts, host_index=1)
    source.read.clear()
    labels = host[5]["label"]
    assert sorted(source.read) == sorted(labels.tolist()) and len(labels) == 8 // num_hosts


def test_host_split_must_be_even():
    with pytest.raises(ValueError, match="3 hosts"):
        make_pipeline(_CountingSource(37), PREPROCESS, batch_size=8, seed=3, num_hosts=3, host_index=0)
