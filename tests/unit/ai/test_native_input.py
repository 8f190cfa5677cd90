"""1.2.0's input ("native-crop": the whole frame and a window at native resolution) and its statistics network:
noise is seen at the native matrix, a spike stands out of the spectrum, a turn or flip changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from portal.ai import artifacts as impl_a
from portal.ai.native_input import native_crop, native_input, whole_frame


def _phantom(rows: int, cols: int) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols]
    img = 0.2 + 0.6 * (((y - rows / 2) / (0.4 * rows)) ** 2 + ((x - cols / 2) / (0.35 * cols)) ** 2 < 1)
    return (img + 0.05 * np.sin(x / 7.0) * np.cos(y / 11.0)).astype(np.float32)


def test_native_input_shape_and_range():
    out = native_input(_phantom(900, 600) * 1000.0 - 200.0)
    assert out.shape == (2, 256, 256) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_whole_frame_is_the_old_preprocessing():
    from portal.ai.quality_model import preprocess

    img = _phantom(300, 200) * 50.0
    np.testing.assert_allclose(whole_frame(img), preprocess(img), atol=1e-6)


def test_native_crop_keeps_the_pixels_unresampled():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (1024, 768)).astype(np.float32)
    crop = native_crop(img)
    lo, hi = np.percentile(img[::3, ::3], [1, 99])
    # the window is a block of the frame itself, scaled by the frame's own percentiles: find it exactly
    expected = np.clip((img - lo) / (hi - lo), 0, 1)
    found = any(np.allclose(crop, expected[r:r + 256, c:c + 256], atol=1e-6)
                for r in (0, 384, 768) for c in (0, 256, 512))
    assert found


def test_small_matrix_is_wrapped_not_stretched():
    img = _phantom(64, 96)
    crop = native_crop(img)
    assert crop.shape == (256, 256)
    np.testing.assert_allclose(crop[:64, :96], crop[64:128, 96:192], atol=1e-6)  # periodic extension


def test_native_input_refuses_a_stack():
    with pytest.raises(ValueError):
        native_input(np.zeros((3, 64, 64)))


torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def net():
    from portal.ai.feature_net import FeatureNet

    torch.set_num_threads(1)
    return FeatureNet().eval()


def _stats(net, images) -> np.ndarray:
    x = torch.from_numpy(np.stack([native_input(i) for i in images]))
    with torch.no_grad():
        return net.features_raw(x).numpy()


def test_noise_statistic_sees_noise_added_at_a_large_native_matrix(net):
    """1.1.0 missed noise added at the image's own size (a resize to 256 averages it away); the native window
    keeps it: the noise statistic of the window rises far more than that of the resized frame."""
    clean = _phantom(2048, 2048)
    noisy = impl_a.noise(clean, 0.3, 1, kind="gaussian")
    f = _stats(net, [clean, noisy])
    native_rise = f[1, 2] - f[0, 2]  # log median Laplacian residual, native window (see FeatureNet._noise)
    whole_rise = f[1, 8] - f[0, 8]  # the same of the 256x256 frame
    assert native_rise > 1.0 and native_rise > whole_rise + 0.5


def test_spike_statistic_stands_out(net):
    clean = _phantom(512, 512)
    spiky = impl_a.spike(clean, 0.8, 3, count=1)
    f_clean, f_spike = _stats(net, [clean, spiky])
    assert np.abs(f_spike - f_clean).max() > 1.0


def test_statistics_do_not_care_about_a_turn_or_a_flip(net):
    img = _phantom(320, 320)
    turned = [img, np.rot90(img).copy(), img[:, ::-1].copy()]
    f = _stats(net, turned)
    scale = np.abs(f[0]) + 1.0
    assert (np.abs(f[1] - f[0]) / scale).max() < 0.35
    assert (np.abs(f[2] - f[0]) / scale).max() < 0.35


def test_scripted_network_matches_and_gives_probabilities(net):
    from portal.ai.quality_model import to_torchscript

    x = torch.from_numpy(np.stack([native_input(_phantom(200, 300)), native_input(_phantom(64, 64))]))
    scripted = to_torchscript(net)
    with torch.no_grad():
        a, b = net(x), scripted(x)
    assert a.shape == (2, 7)
    torch.testing.assert_close(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_extra_statistics_of_1_3_0_come_after_1_2_0_s_unchanged_and_see_shading(net):
    from portal.ai.feature_net import FeatureNet

    extra = FeatureNet(extra_stats=True).eval()
    img = _phantom(320, 320)
    shaded = impl_a.bias_field(img, 1.0, 2)
    f_old, f_new = _stats(net, [img, shaded]), _stats(extra, [img, shaded])
    n = f_old.shape[1]
    assert f_new.shape[1] == n + 11
    np.testing.assert_array_equal(f_new[:, :n], f_old)  # 1.2.0's statistics, exactly
    assert f_new[1, n] > f_new[0, n] + 0.3  # the trend of the brightest tissue per cell spans more
    turned = _stats(extra, [img, np.rot90(img).copy(), img[:, ::-1].copy()])[:, n:]
    scale = np.abs(turned[0]) + 1.0
    assert (np.abs(turned[1:] - turned[0]) / scale).max() < 0.35


def test_calibrated_quality_reads_each_output_against_clean_views():
    """1.3.0: quality = 1 + log10(p) / 4, p the share of clean views whose output is at least as high, on the output
    where the view is most unusual; beyond the most extreme clean view it keeps falling."""
    from portal.ai.feature_net import FeatureNet

    m = FeatureNet(calibrated=True).eval()
    m.clean_logits = torch.sort(torch.linspace(-5.0, 0.0, 999).repeat(6, 1), dim=1).values  # 999 clean views
    raw = torch.full((4, 7), -6.0)
    raw[1, 2] = -0.05  # above ~989 of the 999 clean views on one output: p about 1/100
    raw[2, 2], raw[2, 4] = -0.05, -2.5  # the most unusual output decides
    raw[3, 5] = 3.0  # far beyond every clean view
    q = m.scores(raw)[:, 0]
    assert float(q[0]) == pytest.approx(1.0, abs=1e-3)
    assert float(q[1]) == pytest.approx(0.5, abs=0.02)
    assert float(q[2]) == pytest.approx(float(q[1]))
    assert 0.0 <= float(q[3]) < 0.2
    scripted = torch.jit.script(m)
    torch.testing.assert_close(scripted.scores(raw), m.scores(raw))


def test_calibrated_severe_quality_reads_the_severe_head_as_a_seventh_output():
    """1.4.0: a table of 7 rows reads the severe head's logit (raw column 7) against clean views too."""
    from portal.ai.feature_net import FeatureNet

    m = FeatureNet(calibrated=True).eval()
    m.clean_logits = torch.sort(torch.linspace(-5.0, 0.0, 999).repeat(7, 1), dim=1).values
    raw = torch.full((2, 7), -6.0)
    raw[1, 6] = -0.05  # only the severe logit is unusual: p about 1/100
    q = m.scores(raw)[:, 0]
    assert float(q[0]) == pytest.approx(1.0, abs=1e-3)
    assert float(q[1]) == pytest.approx(0.5, abs=0.02)
    m.clean_logits = m.clean_logits[:6].contiguous()  # 1.3.0's table: the severe logit is not read
    assert float(m.scores(raw)[1, 0]) == pytest.approx(1.0, abs=1e-3)


def _phantom(rows: int = 256, cols: int = 256) -> np.ndarray:
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    img = np.where(x ** 2 / 0.7 + y ** 2 / 0.5 < 1, 0.5, 0.0)
    img = np.where((x - 0.2) ** 2 + y ** 2 < 0.08, 0.9, img)
    return img.astype(np.float32)


def test_physics_statistics_see_shading_and_fold_over_and_ignore_turns():
    """1.4.0's statistics: a multiplicative field widens the fitted log-intensity range and sharpening; a turn or
    a flip of the frame changes nothing; an aliased (periodically extended) frame is continuous across its edges."""
    from portal.ai import artifacts_c as impl_c
    from portal.ai.feature_net import FeatureNet

    net = FeatureNet(extra_stats=True, physics_stats=True).eval()
    clean = _phantom()
    shaded = impl_c.bias_field(clean, 1.0, 3, mode="gradient")
    views = [clean, np.rot90(clean).copy(), clean[:, ::-1].copy(), shaded]
    x = torch.from_numpy(np.stack([np.stack([v, v]) for v in views]).astype(np.float32))
    with torch.no_grad():
        f = net.physics_features(x).numpy()
    assert f.shape == (4, 31)
    np.testing.assert_allclose(f[1], f[0], atol=1e-3)
    np.testing.assert_allclose(f[2], f[0], atol=1e-3)
    assert f[3, 1] > f[0, 1] + 0.5  # the linear fit's range (log units) of a 10x field
    assert f[3, 3] > 0.0 and f[3, 3] > f[0, 3]  # the histogram sharpens once the trend is removed
    rows = np.linspace(0.3, 0.9, 256)[:, None]
    cut = np.full((256, 256), 1.0, np.float32) * rows  # an object through the whole frame, darker at the top
    cut[:, :40] = 0.0
    wrapped = impl_a.wraparound(cut, 0.6, 1, axis=0)  # folded, then shown on the frame: periodic across the edge
    x = torch.from_numpy(np.stack([np.stack([v, v]) for v in (cut, wrapped)]).astype(np.float32))
    with torch.no_grad():
        seams = net._seams(x[:, 0])
    # the axis with the larger jump ratio comes second: an aliased frame jumps less across its seam
    assert float(seams[1, 5]) < float(seams[0, 5])


def test_a_native_crop_model_scores_a_series_through_the_registry(tmp_path, net):
    """A manifest asking for "native-crop" (2 channels) is accepted, fed (N, 2, 256, 256) and heat-mapped (by
    occlusion: the statistics have no feature maps), without any training: an untrained FeatureNet."""
    import hashlib
    import io
    import json

    from PIL import Image

    from portal.ai.infer import score_series
    from portal.ai.quality_model import to_torchscript
    from portal.ai.registry import clear_cache, load_model
    from portal.dicom.samples import make_series, sample_path

    folder = tmp_path / "lightbox-quality" / "9.0.0"
    folder.mkdir(parents=True)
    to_torchscript(net).save(str(folder / "model.pt"))
    outputs = [{"name": "quality", "type": "float", "threshold": 0.5, "direction": "below"}]
    outputs += [{"name": n, "type": "probability"} for n in impl_a.ARTIFACTS]
    (folder / "manifest.json").write_text(json.dumps({
        "name": "lightbox-quality", "version": "9.0.0", "kind": "torchscript", "file": "model.pt",
        "sha256": hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest(),
        "input": {"size": 256, "channels": 2, "normalisation": "native-crop"}, "outputs": outputs,
        "critical": {"output": "quality", "below": 0.3, "meaning": "likely unusable"},
        "series": {"max_frames": 4, "aggregate": "median"}}))
    try:
        runner = load_model(folder)
        assert runner.preprocess(np.ones((300, 200)) * np.arange(200)).shape == (2, 256, 256)
        paths = make_series(sample_path("CT_small.dcm"), tmp_path / "ct", 3)
        result = score_series(paths, folder)
        assert result["model"] == {"name": "lightbox-quality", "version": "9.0.0"}
        assert result["frames_scored"] == 3 and result["aggregate"] == "median"
        assert all(0.0 <= v <= 1.0 for v in result["scores"].values())
        assert Image.open(io.BytesIO(result["heatmap_png"])).size == (128, 128)
    finally:
        clear_cache()
