"""The streaming multipart parser (portal/uploads.py): the same parts whatever chunks the server hands over,
in memory or spooled, and clear refusals of malformed, truncated or oversized bodies."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from portal import uploads
from portal.errors import Invalid, TooLarge

BOUNDARY = "b0undary-xyz"


def body(parts: list[tuple[dict, bytes]], preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    out = [preamble]
    for headers, data in parts:
        out.append(f"--{BOUNDARY}\r\n".encode())
        out += [f"{k}: {v}\r\n".encode() for k, v in headers.items()]
        out += [b"\r\n", data, b"\r\n"]
    out.append(f"--{BOUNDARY}--\r\n".encode() + epilogue)
    return b"".join(out)


def parse(raw: bytes, tmp_path, sizes, **kw) -> list[uploads.Part]:
    async def chunks():
        i, n = 0, 0
        while i < len(raw):
            step = sizes[n % len(sizes)]
            yield raw[i:i + step]
            i, n = i + step, n + 1

    kw.setdefault("max_total", 1 << 30)
    return asyncio.run(uploads.parse_multipart(chunks(), BOUNDARY, tmp_path, **kw))


def content(part: uploads.Part) -> bytes:
    if part.data is not None:
        return part.data
    if part.path is not None:
        return part.path.read_bytes()
    return part.value


FILE = {"Content-Disposition": 'form-data; name="file"; filename="a.dcm"', "Content-Type": "application/dicom"}


def _payloads():
    rng = random.Random(7)
    # Data full of the delimiter's own bytes: CRLF, dashes and near-misses of the boundary.
    tricky = b"".join(rng.choice([b"\r\n", b"--", b"\r\n--", f"\r\n--{BOUNDARY[:-1]}".encode(), rng.randbytes(5)])
                      for _ in range(4000))
    tricky = tricky.replace(f"\r\n--{BOUNDARY}".encode(), b"")  # a random byte may complete one
    assert f"\r\n--{BOUNDARY}".encode() not in tricky
    return [b"", b"x", os.urandom(70_000), tricky]


@pytest.fixture(params=["whole", "gathered-then-streamed"])
def gather(request, monkeypatch):
    """A body in memory is gathered whole before it is split, unless it is bigger than GATHER_BYTES: then its
    first chunks are gathered and the rest streamed (here with a small limit, so every body crosses it)."""
    if request.param != "whole":
        monkeypatch.setattr(uploads, "GATHER_BYTES", 5_000)
    return request.param


@pytest.mark.parametrize("sizes", [[1], [3, 7], [64], [1000, 17], [65536], [1 << 22]])
@pytest.mark.parametrize("memory", [0, 1 << 20, 80_000])
def test_same_parts_whatever_the_chunks(tmp_path, sizes, memory, gather):
    files = _payloads()
    raw = body([({"Content-Disposition": 'form-data; name="Project"'}, b"demo")]
               + [(FILE, f) for f in files], preamble=b"ignored preamble\r\n", epilogue=b"ignored epilogue")
    parts = parse(raw, tmp_path, sizes, memory=memory)
    assert [p.name for p in parts] == ["Project"] + ["file"] * len(files)
    assert not parts[0].is_file and parts[0].value == b"demo"
    assert [content(p) for p in parts[1:]] == files
    assert [p.size for p in parts[1:]] == [len(f) for f in files]
    used = 0
    for p, f in zip(parts[1:], files):  # in memory while the request's total fits, spooled after
        in_memory = memory > 0 and used + len(f) <= memory and memory - used > 0
        assert (p.data is not None) == in_memory, (len(f), used, memory)
        used += len(f) if in_memory else 0


def test_a_zip_always_goes_to_disk(tmp_path):
    zipped = b"PK\x03\x04" + os.urandom(1000)
    (part,) = parse(body([(FILE, zipped)]), tmp_path, [2], memory=1 << 20)
    assert part.data is None and part.path.read_bytes() == zipped


def test_a_part_without_headers_is_a_file(tmp_path):
    raw = f"--{BOUNDARY}\r\n\r\nDATA\r\n--{BOUNDARY}--".encode()
    (part,) = parse(raw, tmp_path, [1], memory=1 << 20)
    assert part.is_file and part.data == b"DATA" and part.filename == "part-1"


@pytest.mark.parametrize("raw, suberror", [
    (b"no boundary anywhere", "no_data_submitted"),
    (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nhalf a file".encode(), "truncated"),
    (f"--{BOUNDARY}\r\nContent-Type: application/dicom".encode(), "malformed_multipart"),
    (f"--{BOUNDARY}".encode(), "truncated"),
])
def test_malformed_bodies_are_refused(tmp_path, raw, suberror, gather):
    for sizes in ([1], [1 << 20]):
        for memory in (0, 1 << 20):
            with pytest.raises(Invalid) as exc:
                parse(raw, tmp_path, sizes, memory=memory)
            assert exc.value.suberror == suberror


def test_limits(tmp_path):
    field = {"Content-Disposition": 'form-data; name="note"'}
    with pytest.raises(TooLarge) as exc:
        parse(body([(field, b"a" * (uploads.MAX_FIELD_BYTES + 1))]), tmp_path, [4096])
    assert exc.value.suberror == "field_too_long"
    with pytest.raises(TooLarge) as exc:
        parse(body([(FILE, b"x")] * 3), tmp_path, [10], max_parts=2)
    assert exc.value.suberror == "too_many_parts"
    for memory in (0, 1 << 20):  # the whole body's size, while it is gathered as while it is streamed
        with pytest.raises(TooLarge) as exc:
            parse(body([(FILE, os.urandom(5000))]), tmp_path, [100], max_total=4000, memory=memory)
        assert exc.value.suberror == "too_large"


@pytest.mark.parametrize("boundary", ["", "x" * 201])
def test_a_body_without_a_usable_boundary_is_refused_before_it_is_read(tmp_path, boundary):
    async def never():
        raise AssertionError("the body was read")
        yield b""

    with pytest.raises(Invalid) as exc:
        asyncio.run(uploads.parse_multipart(never(), boundary, tmp_path, max_total=1 << 30, memory=1 << 20))
    assert exc.value.suberror == "no_boundary"
