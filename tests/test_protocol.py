"""The COM1 marker scanner: records survive any chunking, line ends, noise and bad UTF-8."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.protocol import (
    MAX_PENDING_BYTES,
    MAX_RECORD_BYTES,
    PREFIX,
    Scanner,
    Status,
    as_test_marker,
    parse_line,
    result_of,
)

RECORD_TEXT = st.sampled_from([
    "START|version=1",
    "CONFIG|http_url=http://10.0.2.2:18080/aero-virtio-selftest|udp_port=18081|blk_root=D:\\x\\",
    "TEST|virtio-blk|PASS|write_ok=1|write_bytes=4194304|write_mbps=12.5",
    "TEST|virtio-net|FAIL|large_ok=0|reason=timeout",
    "TEST|virtio-snd|SKIP|flag_not_set",
    "TEST|virtio-input|INFO|keys=3",
    "TEST|virtio-snd|READY",
    "RESULT|PASS",
    "RESULT|FAIL",
])
# Noise: anything but a newline, so it never splits a record line; may contain partial prefixes and
# whole mentions of records. Its first byte is printable, so a noise line is never a record.
NOISE = st.one_of(
    st.binary(max_size=200).map(lambda b: b"#" + b.replace(b"\n", b"")),
    st.sampled_from([b"AERO_VIRTIO", b"xAERO_VIRTIO_SELFTEST|RESULT|PASS", b"#\xff\xfe\x00", b"\x1b[0m",
                     b"|||", b"log: previous boot ended with AERO_VIRTIO_SELFTEST|RESULT|PASS"]),
)
# What a UART or an interleaved kernel message may leave before a record on its line.
LEADING = st.binary(max_size=6).map(lambda b: bytes(c % 0x21 for c in b if c % 0x21 != 0x0A))


def feed_all(chunks: list[bytes]) -> list[str]:
    scanner = Scanner()
    texts = [r.text for chunk in chunks for r in scanner.feed(chunk)]
    return texts + [r.text for r in scanner.flush()]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


@settings(max_examples=300, deadline=None)
@given(records=st.lists(st.tuples(NOISE, LEADING, RECORD_TEXT, st.sampled_from([b"\n", b"\r\n"])), max_size=12),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_any_split_of_the_stream_gives_the_same_records(records: list[tuple[bytes, bytes, str, bytes]],
                                                        cuts: list[int]) -> None:
    stream = b"".join(noise + b"\n" + lead + PREFIX + text.encode() + end for noise, lead, text, end in records)
    expected = [PREFIX.decode() + text for _, _, text, _ in records]
    assert feed_all([stream]) == expected
    assert feed_all(split_at(stream, cuts)) == expected
    assert feed_all([stream[i:i + 1] for i in range(min(len(stream), 3000))]) == feed_all([stream[:3000]])


@pytest.mark.attack
@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.one_of(NOISE.map(lambda n: (n, False)),
                                st.tuples(LEADING, RECORD_TEXT).map(lambda t: (t[0] + PREFIX + t[1].encode(), True))),
                      max_size=20),
       cuts=st.lists(st.integers(min_value=0, max_value=5_000), max_size=30))
def test_a_line_is_a_record_only_when_it_starts_with_the_prefix(lines: list[tuple[bytes, bool]],
                                                                cuts: list[int]) -> None:
    """Whatever else a line holds, and however the stream is cut: records are exactly the lines that
    start with the prefix after leading whitespace or control bytes; mentions inside free text are
    never records."""
    stream = b"".join(line + b"\r\n" for line, _ in lines)
    expected = [line.lstrip(bytes(range(0x21)) + b"\x7f").decode() for line, is_record in lines if is_record]
    assert feed_all(split_at(stream, cuts)) == expected


@pytest.mark.attack
@settings(max_examples=100, deadline=None)
@given(text=RECORD_TEXT, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10))
def test_a_record_mentioned_in_free_text_is_not_a_record(text: str, cuts: list[int]) -> None:
    stream = b"\x00\xffboot noise " + PREFIX + text.encode() + b"\r\n" + b"\x00\r " + PREFIX + b"RESULT|FAIL\r\n"
    assert feed_all(split_at(stream, cuts)) == ["AERO_VIRTIO_SELFTEST|RESULT|FAIL"]


@pytest.mark.attack
def test_a_free_text_pass_does_not_hide_the_real_fail() -> None:
    stream = (b"log: previous boot ended with AERO_VIRTIO_SELFTEST|RESULT|PASS\r\n"
              b"\x1b[0m AERO_VIRTIO_SELFTEST|RESULT|PASS\r\n"  # an escape sequence is text, not noise
              b"\x00\x00\t AERO_VIRTIO_SELFTEST|RESULT|FAIL\r\n")
    records = Scanner().feed(stream)
    assert [result_of(r) for r in records] == ["FAIL"]


@pytest.mark.attack
def test_a_record_after_megabytes_of_noise_without_newline_is_kept_and_memory_stays_bounded() -> None:
    scanner = Scanner()
    rng = random.Random(7)
    noise = bytes(rng.randrange(256) for _ in range(4096)).replace(b"\n", b".")
    found = []
    high_water = 0
    for _ in range(50_000):  # 200 MiB of noise, one 4 KiB chunk at a time, no newline
        found += scanner.feed(noise)
        high_water = max(high_water, scanner.pending_bytes)
    found += scanner.feed(b"\r\n" + PREFIX + b"RESULT|PA")  # a record split across chunks at the very end
    found += scanner.feed(b"SS\r\n")
    assert [r.text for r in found] == ["AERO_VIRTIO_SELFTEST|RESULT|PASS"]
    assert high_water <= MAX_PENDING_BYTES + len(noise)


@pytest.mark.attack
def test_a_prefix_after_an_overlong_run_of_control_bytes_is_not_lost() -> None:
    scanner = Scanner()
    filler = b"\x00" * (MAX_PENDING_BYTES + 10)
    assert scanner.feed(filler + PREFIX[:7]) == []
    records = scanner.feed(PREFIX[7:] + b"RESULT|FAIL\n")
    assert [r.text for r in records] == ["AERO_VIRTIO_SELFTEST|RESULT|FAIL"]
    assert scanner.pending_bytes == 0


@pytest.mark.attack
def test_an_overlong_text_line_is_dropped_up_to_its_newline() -> None:
    scanner = Scanner()
    assert scanner.feed(b"x" * (MAX_PENDING_BYTES + 10)) == []
    assert scanner.feed(PREFIX + b"RESULT|PASS") == []  # still the same text line
    assert scanner.pending_bytes == 0
    records = scanner.feed(b"\n" + PREFIX + b"RESULT|FAIL\n")
    assert [r.text for r in records] == ["AERO_VIRTIO_SELFTEST|RESULT|FAIL"]


@pytest.mark.attack
def test_an_overlong_record_is_dropped_but_the_next_one_is_found() -> None:
    scanner = Scanner()
    junk_record = PREFIX + b"TEST|x|PASS|" + b"a" * (MAX_RECORD_BYTES * 5)
    records = scanner.feed(junk_record) + scanner.feed(b"\n" + PREFIX + b"RESULT|PASS\n")
    assert [r.text for r in records][-1] == "AERO_VIRTIO_SELFTEST|RESULT|PASS"


@pytest.mark.attack
def test_invalid_utf8_inside_a_record_is_replaced_not_fatal() -> None:
    record = parse_line(PREFIX + b"TEST|virtio-net|PASS|note=\xff\xfe")
    assert record is not None and record.kind == "TEST"
    marker = as_test_marker(record)
    assert marker is not None and marker.status is Status.PASS and marker.fields["note"] == "\ufffd\ufffd"


def test_test_marker_fields_and_bare_reason() -> None:
    record = parse_line(b"AERO_VIRTIO_SELFTEST|TEST|virtio-snd|SKIP|flag_not_set")
    assert record is not None
    marker = as_test_marker(record)
    assert marker is not None
    assert (marker.name, marker.status, marker.fields, marker.reason) == ("virtio-snd", Status.SKIP, {},
                                                                          "flag_not_set")
    blk = as_test_marker(parse_line(b"AERO_VIRTIO_SELFTEST|TEST|virtio-blk|PASS|write_ok=1|read_mbps=9.5\r")
                         or parse_line(b""))  # type: ignore[arg-type]
    assert blk is not None and blk.fields == {"write_ok": "1", "read_mbps": "9.5"} and blk.reason is None


@pytest.mark.attack
def test_malformed_records_are_ignored() -> None:
    for line in (b"AERO_VIRTIO_SELFTEST|", b"AERO_VIRTIO_SELFTEST|TEST|virtio-blk", b"AERO_VIRTIO_SELFTEST|TEST||PASS",
                 b"AERO_VIRTIO_SELFTEST|TEST|virtio-blk|MAYBE"):
        record = parse_line(line)
        assert record is None or as_test_marker(record) is None
    assert result_of(parse_line(b"AERO_VIRTIO_SELFTEST|RESULT|MAYBE")) is None  # type: ignore[arg-type]
    assert parse_line(b"no marker here") is None


@pytest.mark.attack
def test_control_bytes_trailing_a_record_are_noise() -> None:
    records = Scanner().feed(PREFIX + b"RESULT|PASS\x00\r\n" + PREFIX + b"TEST|virtio-blk|PASS|x=1\x1b\x07\n")
    assert [r.text for r in records] == ["AERO_VIRTIO_SELFTEST|RESULT|PASS", "AERO_VIRTIO_SELFTEST|TEST|virtio-blk|PASS|x=1"]
    assert result_of(records[0]) == "PASS"
