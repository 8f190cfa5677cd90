"""Artifact implementation D (portal/ai/artifacts_d.py), the third training-side simulator of 1.4.0:
a known input gives a known corruption (the contract every training-side implementation keeps is in
test_training_implementations.py)."""

from __future__ import annotations

import numpy as np
import pytest

from portal.ai import artifacts_d as impl_d


def test_noise_d_coils_raise_the_floor_and_coloured_keeps_sigma():
    black = np.zeros((128, 128))
    coils = impl_d.noise(black, 1.0, 3, kind="coils")
    assert coils.mean() > 0.05  # a magnitude of several coils: a positive noise floor on black
    flat = np.full((256, 256), 0.5)
    out = impl_d.noise(flat, 0.5, 1, kind="coloured")
    sigma = 0.005 + 0.145 * 0.5
    assert abs(float((out - 0.5).std()) - sigma) < 0.1 * sigma


def test_motion_d_modes_put_ghosts_along_phase_encode():
    img = np.zeros((128, 128))
    img[48:80, 48:80] = 0.8
    for mode in ("rotation", "pulsatile", "jitter"):
        out = impl_d.motion(img, 1.0, 6, axis=0, mode=mode)
        outside = np.r_[0:40, 88:128]
        leak_pe = out[outside][:, 52:76].mean()
        leak_ro = out[52:76][:, outside].mean()
        assert leak_pe > 0.002 and leak_pe >= leak_ro, mode


def test_spike_d_is_a_short_streak_on_one_k_space_line():
    flat = np.full((128, 128), 0.5)
    out = impl_d.spike(flat, 0.7, 3, length=4)
    k = np.abs(np.fft.fftshift(np.fft.fft2(out - out.mean())))
    rows = np.sort(k.sum(1))[::-1]
    assert rows[:2].sum() > 0.8 * rows.sum()  # the burst's line and its mirror (the magnitude image is real)
    assert (k > 0.2 * k.max()).sum() <= 12  # a handful of samples, not a spread


def test_bias_field_d_is_multiplicative_with_the_asked_range():
    flat = np.full((128, 128), 0.5)
    for mode in ("b1", "lattice"):
        out = impl_d.bias_field(flat, 1.0, 5, mode=mode)
        assert out.max() == pytest.approx(0.5, abs=1e-3)
        assert out.max() / max(out.min(), 1e-6) == pytest.approx(8.0, rel=0.05)
        assert np.abs(np.diff(out, axis=0)).max() < 0.05  # smooth
    dome = impl_d.bias_field(flat, 1.0, 5, mode="b1")
    assert dome[54:74, 54:74].mean() > dome[:10].mean()  # the B1 dome is brighter inside than at the rim
    assert impl_d.bias_field(np.zeros((64, 64)), 1.0, 5).max() == 0.0


def test_wraparound_d_folds_what_lies_beyond_an_edge_onto_the_opposite_edge():
    img = np.zeros((100, 40))
    img[:5] = 0.5  # bright anatomy at the top edge, continuing beyond it
    out = impl_d.wraparound(img, 0.5, 2, axis=0)
    d = int(round(100 * (0.05 + 0.30 * 0.5)))
    np.testing.assert_allclose(out[5:100 - d], img[5:100 - d] / max(1.0, 1.0), atol=1e-6)  # the middle untouched
    changed = np.abs(out - img).max(axis=1) > 1e-3
    # either the bottom rows got the top's continuation, or the top rows the (empty) bottom's: the bottom edge
    # carries signal only by the fold
    assert changed[100 - d:].any() or np.array_equal(out[95:], img[95:])
    folded = [impl_d.wraparound(img, 0.5, s, axis=0)[95:].max() for s in range(8)]
    assert max(folded) > 0.2  # for some seeds the top's continuation lands on the bottom


def test_gibbs_d_rings_and_blurs_an_edge():
    edge = np.zeros((128, 128))
    edge[:, 64:] = 0.8
    out = impl_d.gibbs(edge, 1.0, 0, axes=(1,))
    assert out[:, 40:60].max() > 0.02 or out[:, 68:90].min() < 0.78  # over- or undershoot beside the edge
    assert np.abs(np.diff(out[64])).max() < 0.8  # the step is no longer one pixel wide
    np.testing.assert_allclose(out[:, 100:120].mean(), 0.8, atol=0.08)  # the level is kept away from the edge


@pytest.mark.parametrize("shape", [(64, 64), (64, 160), (1024, 512)])
def test_d_runs_at_small_large_and_non_square_matrices(shape):
    rng = np.random.default_rng(0)
    img = np.clip(rng.random(shape) * 0.2 + 0.4, 0, 1)
    for name, fn in impl_d.ARTIFACT_FUNCTIONS.items():
        assert fn(img, 0.5, 1).shape == shape, name
