"""Masks compared with the logits they come from, in a way that holds on any CPU.

A mask is ``logits > 0``. Two runs that agree to within rounding (another CPU, another BLAS
kernel, KV-cached versus teacher-forced decoding) can put a logit that is within rounding of 0
on either side of it: the parity fixture has a pixel whose reference logit is 1.17e-8 and comes
out -1.34e-8 on an AVX-512 machine. So masks are compared exactly wherever the logit is farther
from 0 than the tolerance the logits themselves are held to, and the pixels inside that band are
counted and must be few: a handful of pixels may go either way, a region may not.
"""

from __future__ import annotations

import numpy as np

# The tolerance of the parity tests: our logits are within it of the reference run's.
PARITY_TOLERANCE = 1e-5
# At most this share of the pixels may lie inside the band (the reference has 76 of its 252,000
# mask pixels within 1e-5 of 0: 0.03 %). More would mean a test that no longer checks masks.
MAX_BAND_SHARE = 1e-3


def assert_masks_follow_logits(
    masks: np.ndarray, logits: np.ndarray, tolerance: float = PARITY_TOLERANCE
) -> int:
    """Assert that ``masks`` (bool or 0/255) equal ``logits > 0`` wherever ``|logits|`` exceeds
    ``tolerance``, and that few pixels lie within it. Returns how many pixels the band held."""
    masks = np.asarray(masks)
    logits = np.asarray(logits)
    assert masks.shape == logits.shape, (masks.shape, logits.shape)
    clear = np.abs(logits) > tolerance
    band = int(clear.size - np.count_nonzero(clear))
    assert band <= MAX_BAND_SHARE * clear.size, (
        f"{band} of {clear.size} logits lie within {tolerance} of 0: too many to compare masks"
    )
    mismatched = np.argwhere(clear & ((masks > 0) != (logits > 0)))
    assert mismatched.size == 0, (
        f"{len(mismatched)} pixels clear of the threshold differ: {mismatched[:5].tolist()}..."
    )
    return band


def assert_area_follows_logits(area: int, logits: np.ndarray, tolerance: float = PARITY_TOLERANCE):
    """Assert that a mask's pixel count is that of ``logits > 0`` give or take the pixels whose
    logit is within ``tolerance`` of 0."""
    logits = np.asarray(logits)
    certain = int(np.count_nonzero(logits > tolerance))
    possible = int(np.count_nonzero(logits > -tolerance))
    assert certain <= area <= possible, (area, certain, possible)
