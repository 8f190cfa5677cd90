"""The built-in quality models: preprocessing, prediction, heatmaps, and that they see strong artifacts (1.1.0, the
1-channel CNN, still installed; 1.3.0, the native-crop model in use)."""

from __future__ import annotations

import numpy as np
import pytest

from portal.ai import artifacts
from portal.ai import quality_model as qm
from portal.ai.registry import builtin_model_dir, builtin_models_root, load_model
from portal.dicom.samples import sample_path


@pytest.fixture(scope="module")
def runner():
    return load_model(builtin_models_root() / "lightbox-quality" / "1.1.0", device="cpu")


@pytest.fixture(scope="module")
def native_runner():
    runner = load_model(builtin_model_dir(), device="cpu")
    assert runner.version == "1.4.0"
    return runner


@pytest.fixture(scope="module")
def frames() -> dict[str, np.ndarray]:
    return {name: qm.load_frame(sample_path(name)) for name in ("MR2_UNCI.dcm", "693_UNCI.dcm", "CT_small.dcm")}


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "RG1_UNCI.dcm", "US1_UNCI.dcm", "OBXXXX1A.dcm",
                                  "emri_small.dcm"])
def test_load_frame_gives_the_model_input(name):
    x = qm.load_frame(sample_path(name))
    assert x.shape == (256, 256) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert 0.0 < x.mean() < 1.0


def test_monochrome1_is_inverted_so_signal_is_bright():
    from portal.dicom.render import frame_array

    path = sample_path("RG1_UNCI.dcm")  # MONOCHROME1: high stored values display dark
    stored = frame_array(path).astype(np.float64).ravel()[::97]
    values = qm.frame_values(path).astype(np.float64).ravel()[::97]
    assert np.corrcoef(stored, values)[0, 1] < -0.99
    mono2 = sample_path("CT_small.dcm")
    assert np.corrcoef(frame_array(mono2).ravel(), qm.frame_values(mono2).ravel())[0, 1] > 0.99


def test_normalise_is_robust_and_flat_images_are_zero():
    rng = np.random.default_rng(0)
    img = rng.random((64, 64)).astype(np.float32)
    img[0, 0] = 1e6  # one hot pixel does not squash the rest
    out = qm.normalise(img)
    assert out[1:, 1:].std() > 0.2
    assert np.array_equal(qm.normalise(np.full((8, 8), 7.0)), np.zeros((8, 8), np.float32))


def test_predict_shapes_and_ranges(runner, frames):
    batch = np.stack(list(frames.values()))
    out = qm.predict(runner.module, batch, batch_size=2)
    assert len(out) == 3
    for scores in out:
        assert list(scores) == list(qm.OUTPUTS)
        assert all(0.0 <= v <= 1.0 for v in scores.values())
    # one image, a list, and (N, 1, H, W) all work, and batching does not change the answer
    single = qm.predict(runner.module, batch[0])
    assert len(single) == 1 and single[0]["quality"] == pytest.approx(out[0]["quality"], abs=1e-5)
    assert len(qm.predict(runner.module, list(batch))) == 3
    assert len(qm.predict(runner.module, batch[:, None])) == 3
    with pytest.raises(ValueError, match="256x256"):
        qm.predict(runner.module, np.zeros((2, 128, 128), np.float32))


@pytest.mark.parametrize("name", ["MR2_UNCI.dcm", "693_UNCI.dcm"])
def test_clean_scores_higher_than_strong_noise_or_motion(runner, frames, name):
    clean = frames[name]
    noisy = qm.normalise(artifacts.noise(clean, 1.0, 1))
    moved = qm.normalise(artifacts.motion(clean, 1.0, 1, mode="ghosting"))
    spiked = qm.normalise(artifacts.spike(clean, 1.0, 1))
    s_clean, s_noisy, s_moved, s_spiked = runner([clean, noisy, moved, spiked])
    assert s_clean["quality"] > s_noisy["quality"] + 0.2
    assert s_clean["quality"] > s_moved["quality"]
    assert s_clean["quality"] > s_spiked["quality"] + 0.2
    assert s_noisy["noise"] > 0.5 > s_clean["noise"]
    assert s_spiked["spike"] > 0.5 > s_clean["spike"]


def test_heatmap_shape_and_range(runner, frames):
    x = qm.normalise(artifacts.noise(frames["MR2_UNCI.dcm"], 0.8, 2))
    for target in (None, "noise"):
        heat = runner.heatmap(x, target)
        assert heat.shape == (256, 256) and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() <= 1.0
    with pytest.raises(ValueError, match="Unknown output"):
        qm.heatmap(runner.module, x, "blur")


def test_occlusion_heatmap_for_models_without_gradcam_hooks(runner, frames):
    heat = qm.occlusion_heatmap(runner.module, frames["CT_small.dcm"], 0, stride=32)
    assert heat.shape == (256, 256) and 0.0 <= heat.min() and heat.max() <= 1.0


def test_device_choice(monkeypatch):
    assert qm.pick_device("cpu").type == "cpu"
    monkeypatch.setenv("LIGHTBOX_AI_DEVICE", "cpu")
    assert qm.pick_device().type == "cpu"
    monkeypatch.delenv("LIGHTBOX_AI_DEVICE")
    import torch
    assert qm.pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            qm.pick_device("cuda")


@pytest.mark.parametrize("name", ["MR2_UNCI.dcm", "693_UNCI.dcm"])
def test_native_model_sees_noise_and_a_spike_at_the_native_matrix(native_runner, name):
    """1.3.0: artifacts added at the frame's own matrix (where 1.1.0 missed noise), then its own preprocessing."""
    clean = qm.normalise(qm.frame_values(sample_path(name)))
    noisy = artifacts.noise(clean, 0.8, 1)
    spiked = artifacts.spike(clean, 1.0, 1)
    s_clean, s_noisy, s_spiked = native_runner([native_runner.preprocess(v) for v in (clean, noisy, spiked)])
    assert s_noisy["noise"] > 0.5 > s_clean["noise"]
    assert s_spiked["spike"] > 0.5 > s_clean["spike"]
    assert s_clean["quality"] > s_noisy["quality"] and s_clean["quality"] > s_spiked["quality"]


def test_native_model_heatmap_by_occlusion(native_runner):
    x = native_runner.preprocess(qm.frame_values(sample_path("CT_small.dcm")))
    heat = native_runner.heatmap(x, "quality")
    assert heat.shape == (256, 256) and heat.dtype == np.float32 and 0.0 <= heat.min() and heat.max() <= 1.0
