"""The held-out artifact implementation B (portal/ai/artifacts_alt.py), the no-content rule, and the native-matrix
views of 1.2.0's training: a known input gives a known corruption; matrices, aspect and blank frames behave."""

from __future__ import annotations

import numpy as np
import pytest

from portal.ai import artifacts as impl_a, artifacts_alt as impl_b
from portal.ai.content import no_content_reason



@pytest.mark.parametrize("name", list(impl_b.ARTIFACT_FUNCTIONS))
def test_b_keeps_the_contract_and_is_seeded(square, name):
    fn = impl_b.ARTIFACT_FUNCTIONS[name]
    out = fn(square, 0.8, 7)
    assert out.shape == square.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - square).mean() > 0.003, "the artifact must change the image"
    np.testing.assert_array_equal(out, fn(square, 0.8, 7))
    assert not np.array_equal(out, fn(square, 0.8, 8))
    assert np.abs(fn(square, 1.0, 3) - square).mean() > np.abs(fn(square, 0.05, 3) - square).mean()


def test_kspace_noise_has_the_asked_sigma_on_a_flat_image():
    flat = np.full((256, 256), 0.5)
    out = impl_b.noise(flat, 0.5, 1, kind="kspace")
    sigma = 0.005 + 0.145 * 0.5
    assert abs(float(out.std()) - sigma) < 0.1 * sigma  # white noise through an orthogonal transform keeps sigma
    assert abs(float(out.mean()) - 0.5) < 0.01


def test_quantum_noise_grows_with_the_signal():
    ramp = np.tile(np.linspace(0.05, 0.95, 256), (256, 1))
    out = impl_b.noise(ramp, 0.6, 2, kind="poisson")
    residual = out - ramp
    assert residual[:, -32:].std() > 2 * residual[:, :32].std()


def test_spike_is_one_stripe_frequency_in_kspace():
    flat = np.full((128, 128), 0.5)
    out = impl_b.spike(flat, 0.7, 3, count=1)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(out - out.mean())))
    peak = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    assert peak != (64, 64)
    assert spectrum[peak] > 20 * np.median(spectrum)  # a stripe pattern: energy at one frequency (and its mirror)


def test_gibbs_b_rings_at_an_edge_and_differs_from_a():
    edge = np.zeros((64, 64))
    edge[:, 16:48] = 0.8
    b = impl_b.gibbs(edge, 1.0, 0)
    a = impl_a.gibbs(edge, 1.0, 0, axes=(1,))
    row = b[32]
    assert row[20:44].max() > 0.8 * 1.05  # overshoot beside the edge (Gibbs)
    assert row[:12].max() > 0.02  # ripples out into the dark side
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(b)))
    assert spectrum[0, 32] < 1e-6 * spectrum.max() and spectrum[32, 0] < 1e-6 * spectrum.max()  # corners cut
    assert np.abs(a - b).max() > 0.05  # not A's rectangular band by another route


def test_wraparound_b_puts_a_replica_at_half_the_field_of_view():
    img = np.zeros((128, 128))
    img[10:30, 50:70] = 1.0  # an object near the top edge
    out = impl_b.wraparound(img, 1.0, 4, axis=0)
    # With R = 2 or 3 the replica lands 128/2 = 64 or 128/3 ≈ 43 rows down: signal where there was none.
    assert out[74:94, 50:70].mean() > 0.1 or out[53:73, 50:70].mean() > 0.1
    assert img[53:94, 50:70].max() == 0.0


def test_bias_field_b_is_multiplicative_and_smooth():
    flat = np.full((200, 150), 0.6)
    out = impl_b.bias_field(flat, 1.0, 5)
    gain = out / 0.6
    assert gain.max() <= 1.0 + 1e-6 and gain.min() < 0.5
    assert np.abs(np.diff(gain, axis=0)).max() < 0.05  # smooth: no edges


def test_motion_b_leaves_a_still_point_mostly_but_spreads_ghosts():
    img = np.zeros((128, 128))
    img[60:68, 60:68] = 1.0
    out = impl_b.motion(img, 1.0, 6, axis=0)
    assert out[:50].sum() + out[80:].sum() > 0.2 * out.sum()  # ghosts along phase-encode ...
    assert out[:, :50].sum() + out[:, 80:].sum() < 0.1 * out.sum()  # ... much less across it


@pytest.mark.parametrize("shape", [(64, 64), (64, 160), (2048, 1024)])
def test_both_implementations_run_at_small_large_and_non_square_matrices(shape):
    rng = np.random.default_rng(0)
    img = np.clip(rng.random(shape) * 0.2 + 0.4, 0, 1)
    for fns in (impl_a.ARTIFACT_FUNCTIONS, impl_b.ARTIFACT_FUNCTIONS):
        for name in ("noise", "gibbs", "spike"):  # the FFT ones; the rest are covered at 128x96 above
            assert fns[name](img, 0.5, 1).shape == shape


@pytest.mark.parametrize("frame, reason", [
    (np.zeros((512, 512)), "constant"),
    (np.full((100, 80), 1234.0), "constant"),
    (np.full((64, 64), 50.0) + np.random.default_rng(0).normal(0, 1e-6, (64, 64)), "constant"),
])
def test_blank_and_constant_frames_have_no_content(frame, reason):
    assert no_content_reason(frame) == reason


def test_a_label_on_black_is_mostly_empty_and_a_real_image_is_not(square):
    label = np.zeros((600, 400))
    label[10:14, 10:60] = 4000.0
    assert no_content_reason(label) == "mostly empty"
    assert no_content_reason(square) is None
    small = np.random.default_rng(1).random((64, 64))  # a 64-px matrix is small, not empty
    assert no_content_reason(small) is None


def test_native_views_cover_the_matrix_range_with_aspect_and_stay_in_range():
    from portal.ai import train_native as tn

    frame = np.random.default_rng(2).random((300, 200)).astype(np.float32) + np.linspace(0, 1, 200)[None, :]
    rng = np.random.default_rng(3)
    shapes = [tn.native_view([frame], rng).shape for _ in range(40)]
    longs = [max(s) for s in shapes]
    assert min(longs) >= 64 and max(longs) <= 2048 and max(longs) > 4 * min(longs)
    assert any(s[0] != s[1] for s in shapes) and any(s[0] == s[1] for s in shapes)
    x, labels, sev = tn.corrupt(tn.native_view([frame], rng, long_side=1500), rng, "B", only="noise", severity=0.9)
    assert x.shape == (2, 256, 256) and labels[0] == 1.0 and sev[0] == pytest.approx(0.9)


def test_negative_weight_defaults_to_the_shipped_recipe_and_weighs_the_zero_targets():
    """`--negative-weight` (the 1.5.0 candidate, not shipped): 1 by default, the loss of 1.2.0-1.4.0 exactly; w > 1
    pushes the logits of the 0 targets lower; the command in EVALUATION.md names it only when it differs."""
    import torch
    import torch.nn.functional as F

    from portal.ai import train_native as tn

    args = tn.parse_args(["--out", "x", "--epochs", "30", "--lr", "0.03", "--feature-noise", "0"])
    assert args.negative_weight == 1.0
    assert "--negative-weight" not in tn._command({"negative_weight": 1.0}, tn.VERSION)
    assert "--negative-weight 4" in tn._command({"negative_weight": 4.0}, tn.VERSION)
    g = torch.Generator().manual_seed(0)
    f = torch.randn(256, 8, generator=g)
    y = (torch.rand(256, 2, generator=g) < 0.5).float()
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = torch.nn.Linear(8, 2)

        def from_features(self, x):
            return self.mlp(x)

    means = []
    for w in (1.0, 8.0):
        torch.manual_seed(0)
        net = Net()
        args.negative_weight = w
        tn._fit_mlp(torch, F, net, f, y, args)
        with torch.no_grad():
            means.append(float(net.mlp(f)[y < 0.5].mean()))
    assert means[1] < means[0] - 0.3
