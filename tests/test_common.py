"""wsi/inference/common.py: what both inference modes share (statistics, mixed precision, the busy clock)."""

import time

import torch

from wsi.inference.common import BusyClock, InferenceStats, amp_dtype, autocast


def test_stats_count_per_position_and_transform():
    stats = InferenceStats(positions=10, transforms=8, cnn_evaluations=720, bytes_decoded=8 * 10 * 3 * 96 * 96)
    assert stats.evaluations_per_position == 9  # the faithful mode's 3×3 grid, each transform counted
    assert stats.bytes_per_position == 3 * 96 * 96
    assert InferenceStats().evaluations_per_position == 0  # no position: no division by zero


def test_autocast_is_off_unless_asked():
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.rand(1, 3, 8, 8)
    with autocast(torch.device("cpu"), False):
        assert conv(x).dtype == torch.float32
    with autocast(torch.device("cpu"), True):
        assert conv(x).dtype == amp_dtype(torch.device("cpu")) == torch.bfloat16


def test_busy_clock_adds_only_the_time_inside():
    clock = BusyClock(torch.device("cpu"))
    with clock:
        time.sleep(0.05)
    time.sleep(0.1)  # outside: not counted
    with clock:
        time.sleep(0.05)
    assert 0.1 <= clock.seconds < 0.2
