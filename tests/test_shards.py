"""wsi/inference/shards.py: K/N shards of a run, from --shard or torchrun's environment."""

import pytest

from wsi.errors import ParameterError
from wsi.inference.shards import parse_shard, select_shard, shard_from_env


def test_parse_shard_accepts_k_of_n_from_zero():
    assert parse_shard("0/4") == (0, 4) and parse_shard("3/4") == (3, 4) and parse_shard("0/1") == (0, 1)


@pytest.mark.parametrize("text, message", [
    ("4/4", "shard 4/4: need 0 <= K < N"), ("-1/2", "need 0 <= K < N"), ("0/0", "need 0 <= K < N"),
    ("1", "shard '1': expected K/N"), ("a/b", "expected K/N"), ("1/2/3", "expected K/N"),
])
def test_parse_shard_refuses_in_one_line_naming_the_parameter(text, message):
    with pytest.raises(ParameterError, match=message) as err:
        parse_shard(text)
    assert err.value.as_option().startswith("--shard ")


def test_shard_from_torchrun_environment():
    assert shard_from_env({"RANK": "2", "WORLD_SIZE": "3"}) == (2, 3)
    assert shard_from_env({}) == (0, 1)
    assert shard_from_env({"RANK": "x", "WORLD_SIZE": "3"}) == (0, 1)  # not torchrun's: one shard


@pytest.mark.parametrize("n", [1, 2, 3, 7, 12])
def test_shards_are_disjoint_and_together_all_in_order(n):
    jobs = list(range(10))
    parts = [select_shard(jobs, (k, n)) for k in range(n)]
    assert sorted(j for part in parts for j in part) == jobs
    assert all(part == sorted(part) for part in parts)
    assert [len(part) for part in parts] == [len(jobs[k::n]) for k in range(n)]
