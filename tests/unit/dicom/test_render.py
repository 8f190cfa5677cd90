"""render_frame and thumbnail: every transfer syntax, windows, colour, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from portal.dicom import DicomRejected, render_frame, thumbnail
from portal.dicom.samples import CHEST_CR, MULTIFRAME_BY_SYNTAX, SAMPLES_BY_SYNTAX, sample_path

from ._files import png_pixels


@pytest.mark.parametrize("label", sorted(SAMPLES_BY_SYNTAX))
def test_renders_every_syntax(label):
    pixels = png_pixels(render_frame(sample_path(SAMPLES_BY_SYNTAX[label])))
    assert pixels.dtype == np.uint8
    assert pixels.min() != pixels.max()
    assert len(np.unique(pixels)) > 10


@pytest.mark.parametrize("label", sorted(MULTIFRAME_BY_SYNTAX))
def test_multiframe_frames_agree_across_syntaxes(label):
    # The same lossless image in every syntax: frame 5 renders identically.
    reference = png_pixels(render_frame(sample_path(MULTIFRAME_BY_SYNTAX["explicit_le"]), 4))
    assert np.array_equal(png_pixels(render_frame(sample_path(MULTIFRAME_BY_SYNTAX[label]), 4)), reference)


def test_colour_comes_out_rgb():
    pixels = png_pixels(render_frame(sample_path(SAMPLES_BY_SYNTAX["jpeg_baseline"])))
    assert pixels.ndim == 3 and pixels.shape[2] == 3


def test_window_changes_the_image_and_invert_flips_it():
    path = sample_path("CT_small.dcm")
    default = png_pixels(render_frame(path)).astype(int)
    narrow = png_pixels(render_frame(path, window_center=40, window_width=80)).astype(int)
    assert not np.array_equal(default, narrow)
    inverted = png_pixels(render_frame(path, invert=True)).astype(int)
    assert np.array_equal(inverted, 255 - default)


def test_monochrome1_is_inverted(tmp_path):
    src = sample_path("CT_small.dcm")
    ds = dcmread(src)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    grey = png_pixels(render_frame(src)).astype(int)
    assert np.array_equal(png_pixels(render_frame(tmp_path / "m1.dcm")).astype(int), 255 - grey)


def test_chest_radiograph_thumbnail():
    pixels = png_pixels(thumbnail(sample_path(CHEST_CR), 128))
    assert max(pixels.shape) == 128 and pixels.std() > 20


def test_size_keeps_aspect():
    image = Image.open(io.BytesIO(render_frame(sample_path("JPGExtended.dcm"), size=128)))
    assert max(image.size) == 128
    assert image.size == (32, 128)  # 256 wide by 1024 high


def test_jpeg_output():
    data = render_frame(sample_path("CT_small.dcm"), fmt="jpeg")
    assert Image.open(io.BytesIO(data)).format == "JPEG"


def test_thumbnail_is_small_png_of_middle_frame():
    path = sample_path(MULTIFRAME_BY_SYNTAX["rle"])
    thumb = png_pixels(thumbnail(path, 32))
    assert thumb.shape == (32, 32)
    assert np.array_equal(png_pixels(thumbnail(path, 64)), png_pixels(render_frame(path, 5)))


def test_no_pixel_data():
    with pytest.raises(DicomRejected) as exc:
        render_frame(sample_path("rtplan.dcm"))
    assert exc.value.suberror == "no_pixel_data"


def test_frame_out_of_range():
    with pytest.raises(DicomRejected) as exc:
        render_frame(sample_path("CT_small.dcm"), 1)
    assert exc.value.suberror == "frame_not_found"


def test_cannot_decode_names_the_syntax():
    # 12-bit JPEG Extended that neither Pillow nor libjpeg can decode.
    with pytest.raises(DicomRejected) as exc:
        render_frame(sample_path("JPEG-lossy.dcm"))
    assert exc.value.suberror == "cannot_decode"
    assert "JPEG Extended" in exc.value.detail


def test_unknown_format():
    with pytest.raises(DicomRejected) as exc:
        render_frame(sample_path("CT_small.dcm"), fmt="gif")
    assert exc.value.suberror == "unsupported_format"


def test_bare_dataset_renders_like_the_part10_file(tmp_path):
    src = sample_path("CT_small.dcm")
    ds = dcmread(src)
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(src.read_bytes()[132 + 12 + ds.file_meta.FileMetaInformationGroupLength:])
    assert render_frame(bare) == render_frame(src)


def test_a_small_copy_of_a_big_radiograph_is_block_averaged_and_auto_windowed():
    """The series page's preview (first pixels): a 2k CR shrinks before windowing; auto window uses the pixels."""
    import io

    from PIL import Image

    from portal.dicom import render_frame, samples
    from portal.dicom.render import _shrink

    arr = np.arange(16, dtype=np.uint16).reshape(4, 4)
    assert _shrink(arr, 2).tolist() == [[2, 4], [10, 12]]  # 2×2 block means, rounded
    assert _shrink(arr, 4) is arr
    path = samples.sample_path(samples.CHEST_CR)
    header = Image.open(io.BytesIO(render_frame(path, 0, size=512)))
    auto = Image.open(io.BytesIO(render_frame(path, 0, size=512, auto_window=True)))
    assert max(header.size) == max(auto.size) == 512
    spread = lambda im: float(np.percentile(np.asarray(im), 95) - np.percentile(np.asarray(im), 5))  # noqa: E731
    assert spread(auto) > spread(header)  # the header's window leaves the radiograph washed out
