"""Artifact implementation C (portal/ai/artifacts_c.py), the second training-side simulator of 1.3.0:
a known input gives a known corruption (the contract every training-side implementation keeps is in
test_training_implementations.py)."""

from __future__ import annotations

import numpy as np
import pytest

from portal.ai import artifacts_c as impl_c


def test_noise_c_varies_over_the_image_with_the_asked_mean_sigma():
    flat = np.full((256, 256), 0.5)
    out = impl_c.noise(flat, 0.5, 1, kind="gaussian")
    sigma = 0.005 + 0.145 * 0.5
    assert abs(float((out - 0.5).std()) - sigma) < 0.25 * sigma
    blocks = (out - 0.5).reshape(8, 32, 8, 32).std(axis=(1, 3))
    assert blocks.max() / blocks.min() > 1.2  # a g-factor map, not uniform noise


def test_wraparound_c_periodic_repeats_the_field_of_view_without_resizing():
    img = np.zeros((100, 40))
    img[10:20] = 1.0  # a band near the top of the object
    fov = int(round(100 * (1 - (0.06 + 0.30 * 0.5))))
    for seed in range(4):
        out = impl_c.wraparound(img, 0.5, seed, axis=0, mode="periodic")
        bright = out[:, 0] > 0.5
        # the band keeps its place and thickness (no stretch) and repeats one field of view further on
        assert bright[10:20].all() and bright[10 + fov:min(100, 20 + fov)].all()
        assert bright.sum() == 10 + len(range(10 + fov, min(100, 20 + fov)))


def test_wraparound_c_band_lays_one_edge_over_the_other():
    img = np.zeros((80, 30))
    img[:6], img[-6:] = 0.3, 0.6  # the top and bottom edges of the object differ
    for seed in range(4):
        out = impl_c.wraparound(img, 0.2, seed, axis=0, mode="band")
        d = max(int(round(80 * (0.04 + 0.26 * 0.2))), 1)
        np.testing.assert_allclose(out[d:-d], img[d:-d], atol=1e-6)  # the middle untouched, nothing resized
        assert np.abs(out - img).max() > 0.15  # an edge got the other edge's signal


def test_bias_field_c_is_multiplicative_with_the_asked_range():
    flat = np.full((128, 128), 0.5)
    for mode in ("coil", "lowpass", "gradient"):
        out = impl_c.bias_field(flat, 1.0, 5, mode=mode)
        assert out.max() == pytest.approx(0.5, abs=1e-3)
        assert out.max() / max(out.min(), 1e-6) == pytest.approx(10.0, rel=0.05)
        assert np.abs(np.diff(out, axis=0)).max() < 0.05  # smooth
    black = np.zeros((64, 64))
    assert impl_c.bias_field(black, 1.0, 5).max() == 0.0


def test_spike_c_adds_stripes_at_few_frequencies():
    flat = np.full((128, 128), 0.5)
    out = impl_c.spike(flat, 0.7, 3, count=1)
    power = np.abs(np.fft.fft2(out - out.mean())) ** 2
    top = np.sort(power.ravel())[::-1]
    assert top[:8].sum() > 0.8 * power.sum()  # a small cluster of k-space samples (and their mirrors)


def test_gibbs_c_rings_at_an_edge():
    edge = np.zeros((128, 128))
    edge[:, 64:] = 0.8
    out = impl_c.gibbs(edge, 1.0, 0, axes=(1,))
    assert out[:, 40:60].max() > 0.02 or out[:, 68:90].min() < 0.78  # over- or undershoot beside the edge


def test_motion_c_modes_put_ghosts_along_phase_encode():
    img = np.zeros((128, 128))
    img[48:80, 48:80] = 0.8
    for mode in ("shots", "scatter", "drift"):
        out = impl_c.motion(img, 1.0, 6, axis=0, mode=mode)
        outside_rows = np.r_[0:40, 88:128]
        # along phase-encode (rows) the signal leaks out of the square's rows; along readout much less
        leak_pe = out[outside_rows][:, 48:80].mean()
        leak_ro = out[48:80][:, outside_rows].mean()
        assert leak_pe > 0.002 and leak_pe > leak_ro, mode


@pytest.mark.parametrize("shape", [(64, 64), (64, 160), (1024, 512)])
def test_c_runs_at_small_large_and_non_square_matrices(shape):
    rng = np.random.default_rng(0)
    img = np.clip(rng.random(shape) * 0.2 + 0.4, 0, 1)
    for name, fn in impl_c.ARTIFACT_FUNCTIONS.items():
        assert fn(img, 0.5, 1).shape == shape, name
