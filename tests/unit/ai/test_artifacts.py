"""Synthetic artifacts: each changes the image, more with severity, reproducibly from its seed."""

from __future__ import annotations

import numpy as np
import pytest

from portal.ai import artifacts
from portal.ai.artifacts import ARTIFACT_FUNCTIONS, ARTIFACTS, apply_artifacts


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A 128x128 phantom: a bright disc with an inner structure on a dark background, edges to the borders."""
    y, x = np.mgrid[-1:1:128j, -1:1:128j]
    img = 0.15 + 0.6 * (x**2 + y**2 < 0.6) + 0.25 * ((x - 0.2) ** 2 + (y + 0.1) ** 2 < 0.05)
    img[:, :6] = 0.7  # signal at the edges, so that wrap-around shows
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.mark.parametrize("name", ARTIFACTS)
def test_artifact_changes_the_image_and_keeps_the_contract(image, name):
    before = image.copy()
    out = ARTIFACT_FUNCTIONS[name](image, 0.8, 7)
    assert out.shape == image.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.abs(out - image).mean() > 0.005
    assert np.array_equal(image, before)  # the input is never changed


@pytest.mark.parametrize("name", ARTIFACTS)
def test_same_seed_same_result_other_seed_other_result(image, name):
    a = ARTIFACT_FUNCTIONS[name](image, 0.6, 123)
    b = ARTIFACT_FUNCTIONS[name](image, 0.6, np.random.default_rng(123))
    assert np.array_equal(a, b)
    others = [ARTIFACT_FUNCTIONS[name](image, 0.6, seed) for seed in (1, 2, 3)]
    assert any(not np.array_equal(a, o) for o in others)


@pytest.mark.parametrize("name", ARTIFACTS)
def test_severity_makes_it_worse(image, name):
    def change(severity: float) -> float:
        return float(np.mean([np.abs(ARTIFACT_FUNCTIONS[name](image, severity, s) - image).mean() for s in range(4)]))

    assert change(1.0) > change(0.1)


def test_kspace_artifacts_have_their_signature(image):
    # A spike puts a periodic pattern on the image: one strong off-centre peak in its spectrum.
    spiked = artifacts.spike(image, 1.0, 3, count=1)
    diff = np.abs(np.fft.fftshift(np.fft.fft2(spiked - image)))
    diff[62:67, 62:67] = 0
    assert diff.max() > 20 * np.median(diff)
    # Truncation leaves nothing outside the kept band of k-space.
    ringing = artifacts.gibbs(image, 1.0, 0, axes=(0, 1))
    k = np.abs(np.fft.fftshift(np.fft.fft2(ringing.astype(np.float64))))
    assert k[:20].mean() < 0.05 * k[54:74, 54:74].mean()
    # Every motion mode moves signal into the dark background along the phase-encode axis.
    for mode in ("rigid", "respiratory", "ghosting"):
        moved = artifacts.motion(image, 1.0, 0, axis=0, mode=mode)
        assert np.abs(moved - image).mean() > 0.005, mode
    # Fold-over adds signal from the far side; without the fold it does not.
    folded = artifacts.wraparound(image, 1.0, 5, axis=1)
    unfolded = artifacts.wraparound(image, 1.0, 5, axis=1, fold=False)
    assert np.abs(folded - unfolded).mean() > 0.01


def test_bias_field_is_smooth_and_multiplicative(image):
    flat = np.full((64, 64), 0.5, np.float32)
    shaded = artifacts.bias_field(flat, 1.0, 4)
    assert shaded.max() / shaded.min() > 3  # strong shading...
    assert np.abs(np.diff(shaded, axis=0)).max() < 0.05  # ...that varies slowly
    assert np.all(artifacts.bias_field(np.zeros((32, 32), np.float32), 1.0, 4) == 0)  # nothing where no signal


def test_apply_artifacts_combines_in_order_and_rejects_unknown(image):
    a = apply_artifacts(image, {"noise": 0.5, "motion": 0.5}, 9)
    assert np.array_equal(a, apply_artifacts(image, {"motion": 0.5, "noise": 0.5}, 9))
    assert np.array_equal(apply_artifacts(image, {}, 9), image)
    with pytest.raises(ValueError, match="Unknown artifact"):
        apply_artifacts(image, {"blur": 0.5})


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_bad_severity_and_shape_are_refused(image, bad):
    with pytest.raises(ValueError, match="Severity"):
        artifacts.noise(image, bad, 0)
    with pytest.raises(ValueError, match="2D image"):
        artifacts.noise(np.zeros((4, 4, 3)), 0.5, 0)
