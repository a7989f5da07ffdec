"""wsi.data.draws: one item's random draws, the same from a seed, and their packed form for the device path."""

import numpy as np
import torch

from wsi.data.draws import DRAW_FIELDS, JITTER, GridDraws, draw_augmentation, pack_draws, unpack_draws


def test_draws_come_from_the_generator_alone_and_within_the_originals_ranges():
    first = [draw_augmentation(np.random.default_rng([7, 0, i])) for i in range(200)]
    again = [draw_augmentation(np.random.default_rng([7, 0, i])) for i in range(200)]
    assert first == again
    b, c, s, h = JITTER
    for d in first:
        assert sorted(d.order) == [0, 1, 2, 3] and d.jitter
        assert 1 - b <= d.brightness <= 1 + b and 1 - c <= d.contrast <= 1 + c and 1 - s <= d.saturation <= 1 + s
        assert -h <= d.hue <= h and d.rotate in range(4) and isinstance(d.flip, bool)
    assert {d.rotate for d in first} == {0, 1, 2, 3} and {d.flip for d in first} == {False, True}


def test_packed_draws_unpack_to_the_same_draws():
    for i in range(50):
        draws = draw_augmentation(np.random.default_rng(i))
        vector = pack_draws(draws)
        assert vector.dtype == torch.float64 and vector.shape == (DRAW_FIELDS,)
        assert unpack_draws(vector) == draws
    # No augmentation packs as the identity: no jitter, no flip, no turn.
    assert unpack_draws(pack_draws(None)) == GridDraws(jitter=False)
