"""`training.seeds`: seed ranges, one file per seed, resuming a killed run, the run's record."""
import json

import numpy as np
import pytest

from training.seeds import SeedsError, parse_seeds, sample_seeds, seed_path


def test_parse_seeds_reads_ranges_and_lists_and_names_a_bad_part():
    assert parse_seeds("0-3,7,10-11") == [0, 1, 2, 3, 7, 10, 11]
    assert parse_seeds("5") == [5] and parse_seeds("2,2,1-2") == [2, 1]
    for bad, message in (("3-1", "ends before"), ("a-b", "bad seed 'a-b'"), ("", "bad seed"), ("-1", "bad seed")):
        with pytest.raises(SeedsError, match=message):
            parse_seeds(bad)


class Killed(Exception):
    pass


class FakeGenerator:
    """`generate(seeds, on_batch)` as `generate_samples`: sample k is k * ones, in batches of 4; can die
    after a number of batches (a killed job)."""

    def __init__(self, die_after=None):
        self.die_after, self.drawn = die_after, []

    def __call__(self, seeds, on_batch):
        for batch, start in enumerate(range(0, len(seeds), 4)):
            if self.die_after is not None and batch == self.die_after:
                raise Killed
            chunk = seeds[start:start + 4]
            self.drawn.extend(int(s) for s in chunk)
            on_batch(chunk, np.ones((len(chunk), 2, 2, 1)) * chunk[:, None, None, None])
        return None, 7


def test_killed_run_resumes_drawing_only_the_missing_seeds(tmp_path):
    record = {"sampler": "pc", "checkpoint_step": 3}
    seeds = parse_seeds("0-9,1500")
    with pytest.raises(Killed):
        sample_seeds(FakeGenerator(die_after=2), seeds, tmp_path, record)
    assert sorted(int(p.stem) for p in tmp_path.glob("*/*.npy")) == list(range(8))  # two whole batches
    resumed = FakeGenerator()
    result = sample_seeds(resumed, seeds, tmp_path, record)
    assert resumed.drawn == [8, 9, 1500]
    assert (result["written"], result["skipped_existing"], result["nfe"]) == (3, 8, 7)
    np.testing.assert_array_equal(np.load(seed_path(tmp_path, 1500)), 1500 * np.ones((2, 2, 1)))
    meta = json.loads((tmp_path / "sampling.json").read_text())
    assert meta["seeds"] == "0-9,1500" and meta["checkpoint_step"] == 3 and meta["sampler"] == "pc"
    again = FakeGenerator()
    assert sample_seeds(again, seeds, tmp_path, record)["nfe"] == 7 and again.drawn == []  # nothing left
    with pytest.raises(SeedsError, match="another run"):
        sample_seeds(FakeGenerator(), seeds, tmp_path, {**record, "checkpoint_step": 4})


def test_non_finite_samples_are_not_written(tmp_path):
    def generate(seeds, on_batch):
        on_batch(seeds, np.full((len(seeds), 2), np.nan))
        return None, 1

    with pytest.raises(FloatingPointError, match="non-finite"):
        sample_seeds(generate, [0, 1], tmp_path, {"sampler": "pc"})
    assert not list(tmp_path.glob("*/*.npy"))
