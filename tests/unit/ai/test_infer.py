"""score_series: a series in, scores, a heatmap overlay, a report and the critical flag out."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from portal.ai.infer import aggregate_scores, overlay_png, representative_frames, score_series
from portal.ai.registry import builtin_model_dir, load_manifest
from portal.dicom import DicomRejected
from portal.dicom.samples import make_series, restamp, sample_path

KEYS = {"model", "scores", "flagged", "per_instance", "frames_scored", "frames_total", "aggregate",
        "representative", "heatmap_png", "report", "critical", "skipped"}


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory):
    return make_series(sample_path("CT_small.dcm"), tmp_path_factory.mktemp("ct"), 3)


def test_score_series_returns_everything(ct_series):
    result = score_series(list(reversed(ct_series)), builtin_model_dir())
    assert KEYS <= set(result)
    assert result["model"] == {"name": "lightbox-quality", "version": "1.4.0"}
    assert list(result["scores"]) == ["quality", "noise", "motion", "spike", "bias_field", "wraparound", "gibbs"]
    assert all(0.0 <= v <= 1.0 for v in result["scores"].values())
    assert result["frames_scored"] == result["frames_total"] == 3
    assert [p["instance_number"] for p in result["per_instance"]] == [1, 2, 3]  # series order, not file order
    assert all(set(p) >= {"sop_instance_uid", "scores", "frame", "flagged"} for p in result["per_instance"])
    assert isinstance(result["critical"], bool)
    assert result["critical"] == (result["scores"]["quality"] < load_manifest(builtin_model_dir()).critical["below"])
    assert "lightbox-quality 1.4.0" in result["report"] and "quality" in result["report"]
    heat = Image.open(io.BytesIO(result["heatmap_png"]))
    assert heat.format == "PNG" and heat.mode == "RGBA"
    rep = result["representative"]
    assert heat.size == (rep["columns"], rep["rows"]) == (128, 128)
    assert rep["sop_instance_uid"] in {p["sop_instance_uid"] for p in result["per_instance"]}


def test_mean_and_worst_aggregates(ct_series):
    mean = score_series(ct_series, aggregate="mean")
    worst = score_series(ct_series, aggregate="worst")
    qualities = [p["scores"]["quality"] for p in mean["per_instance"]]
    assert worst["scores"]["quality"] == pytest.approx(min(qualities), abs=1e-4)
    assert mean["scores"]["quality"] == pytest.approx(np.mean(qualities), abs=1e-3)
    median = score_series(ct_series, aggregate="median")
    assert median["scores"]["quality"] == pytest.approx(np.median(qualities), abs=1e-3)
    with pytest.raises(ValueError, match="aggregate"):
        score_series(ct_series, aggregate="p90")


def test_blank_frames_are_not_scored_and_a_blank_series_has_no_content(ct_series, tmp_path):
    import pydicom

    blank = []
    for k, src in enumerate(ct_series[:2]):
        ds = pydicom.dcmread(src)
        ds.PixelData = np.zeros_like(ds.pixel_array).tobytes()
        ds.save_as(tmp_path / f"blank{k}.dcm")
        blank.append(tmp_path / f"blank{k}.dcm")
    result = score_series(blank)
    assert result["no_content"] and result["scores"] == {} and not result["critical"]
    assert "no diagnostic content" in result["report"]
    mixed = score_series([*blank, *ct_series[2:]])
    assert mixed["frames_scored"] == len(ct_series) - 2 and "quality" in mixed["scores"]
    assert sum("no diagnostic content" in s["reason"] for s in mixed["skipped"]) == 2


def test_multiframe_picks_representative_frames(tmp_path):
    path = restamp(sample_path("emri_small.dcm"), tmp_path / "emri.dcm")  # 10 frames
    frames, total, skipped = representative_frames([path], max_frames=4)
    assert total == 10 and not skipped
    assert [f["frame"] for f in frames] == [1, 3, 6, 8]  # spread over the middle 80%
    result = score_series([path], max_frames=4)
    assert result["frames_scored"] == 4 and result["frames_total"] == 10


def test_unreadable_files_are_skipped_and_an_empty_series_is_refused(ct_series, tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom")
    result = score_series([*ct_series[:1], junk])
    assert result["frames_scored"] == 1 and result["skipped"][0]["path"] == str(junk)
    with pytest.raises(DicomRejected) as exc:
        score_series([junk])
    assert exc.value.suberror == "no_scorable_frames"


def test_aggregate_and_overlay_helpers():
    m = load_manifest(builtin_model_dir())
    per = [{o: 0.2 for o in m.output_names}, {**{o: 0.6 for o in m.output_names}}]
    assert aggregate_scores(m, per, "worst")["quality"] == 0.2 and aggregate_scores(m, per, "worst")["noise"] == 0.6
    png = overlay_png(np.linspace(0, 1, 64 * 64).reshape(64, 64), 100, 50)
    pic = np.asarray(Image.open(io.BytesIO(png)))
    assert pic.shape == (100, 50, 4)
    assert pic[0, 0, 3] == 0 and pic[-1, -1, 3] > 100  # transparent where cold, visible where hot
