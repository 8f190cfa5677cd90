"""frame_bytes: native frames as stored, encapsulated frames as their codestreams."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import generate_frames

from portal.dicom import DicomRejected, frame_bytes
from portal.dicom.samples import MULTIFRAME_BY_SYNTAX, sample_path


def test_native_frames_match_decoded_pixels():
    path = sample_path(MULTIFRAME_BY_SYNTAX["explicit_le"])
    pixels = dcmread(path).pixel_array  # (10, 64, 64) uint16
    frames = frame_bytes(path, [1, 3, 10])
    assert [len(f) for f in frames] == [64 * 64 * 2] * 3
    for data, index in zip(frames, [0, 2, 9], strict=True):
        assert np.array_equal(np.frombuffer(data, "<u2").reshape(64, 64), pixels[index])


def test_big_endian_frames_come_out_little_endian():
    assert frame_bytes(sample_path("MR_small_bigendian.dcm"), [1]) == frame_bytes(sample_path("MR_small.dcm"), [1])


def test_one_bit_frames():
    path = sample_path("liver.dcm")  # SEG, 3 frames of 512x512 at 1 bit
    pixels = dcmread(path).pixel_array
    for number in (1, 3):
        (data,) = frame_bytes(path, [number])
        bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little").reshape(512, 512)
        assert np.array_equal(bits, pixels[number - 1])


@pytest.mark.parametrize("label", ["rle", "jpeg_ls", "jpeg2000"])
def test_encapsulated_frames_are_the_codestreams(label):
    path = sample_path(MULTIFRAME_BY_SYNTAX[label])
    ds = dcmread(path)
    expected = list(generate_frames(ds.PixelData, number_of_frames=10))
    assert frame_bytes(path, [2]) == [expected[1]]
    assert frame_bytes(path, [7, 2, 10]) == [expected[6], expected[1], expected[9]]


@pytest.mark.parametrize("numbers", [[0], [11], [1, 12]])
def test_frame_numbers_out_of_range(numbers):
    with pytest.raises(DicomRejected) as exc:
        frame_bytes(sample_path(MULTIFRAME_BY_SYNTAX["rle"]), numbers)
    assert exc.value.suberror == "frame_not_found"


def test_no_pixel_data():
    with pytest.raises(DicomRejected) as exc:
        frame_bytes(sample_path("rtplan.dcm"), [1])
    assert exc.value.suberror == "no_pixel_data"
