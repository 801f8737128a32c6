"""Watching a run: live progress (a real pseudo-terminal and a pipe), the timeline, report.html
(parsed as HTML and rendered by a real headless browser)."""

from __future__ import annotations

import json
import math
import os
import pty
import select
import struct
import subprocess
import time
import wave
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pyte
import pytest

from harness.audio import analyze
from harness.report import render, tail
from tests.conftest import PASSING, HarnessRun, harness_argv, lines, require_tool

pytestmark = pytest.mark.usefixtures("qemu", "no_stray_qemu")
Run = Callable[..., HarnessRun]
TCG = ("--accel", "tcg", "--timeout-seconds", "30")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


class Page(HTMLParser):
    """What a browser would see of the page: its elements and its text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def has(self, tag: str) -> bool:
        return any(t == tag for t, _ in self.tags)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def browser_png(page: Path, tmp_path: Path) -> Path:
    """report.html rendered by Debian's chromium, headless, to a PNG."""
    chromium = require_tool("chromium", "report.html is checked in a real browser")
    shot = tmp_path / "page.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1400",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True)
    return shot


def assert_rendered(png: Path, *colours: tuple[int, int, int]) -> None:
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (1200, 1400)
        rgb = image.convert("RGB")
        pixels = [rgb.getpixel((x, y)) for y in range(0, rgb.height, 2) for x in range(0, rgb.width, 2)]
    inked = sum(1 for p in pixels if p != (255, 255, 255))
    assert inked > len(pixels) // 50  # not a blank page
    for colour in colours:  # e.g. the verdict banner's colour
        assert sum(1 for p in pixels if all(abs(a - b) < 12 for a, b in zip(p, colour, strict=True))) > 500


PASS_GREEN, FAIL_RED = (0x1A, 0x7F, 0x37), (0xCF, 0x22, 0x2E)


def test_a_passing_run_has_a_page_and_a_timeline(make_guest, run_harness: Run, tmp_path: Path) -> None:
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), *TCG)
    assert run.returncode == 0
    timeline = run.results()["timeline"]
    phases = timeline["phases"]  # type: ignore[index]
    for phase in ("qemu_started", "qemu_up", "first_serial_byte", "start", "result", "qemu_ended",
                  "marker:virtio-blk", "marker:virtio-net"):
        assert phase in phases, phase
    assert phases["qemu_up"] <= phases["start"] <= phases["result"] <= phases["qemu_ended"]
    assert all("at_s" in r for r in timeline["records"]) and len(timeline["records"]) == len(PASSING)  # type: ignore
    assert run.results()["tests"]["virtio-blk"]["at_s"] == phases["marker:virtio-blk"]  # type: ignore[index]
    page = Page((run.out_dir / "report.html").read_text())
    assert not page.has("script") and not any(a.get("src", "").startswith("http") for _, a in page.tags)
    assert "PASS" in page.words and "virtio-net-udp" in page.words and "selftest START" in page.words
    assert "1af4:1042" in page.words  # the PCI table
    links = {a["href"] for t, a in page.tags if t == "a"}
    assert {"results.json", "junit.xml", "serial.log", "http.log", "harness.log"} <= links
    assert_rendered(browser_png(run.out_dir / "report.html", tmp_path), PASS_GREEN)


def test_a_failure_page_embeds_the_screen(make_guest, run_harness: Run, tmp_path: Path) -> None:
    failing = [r if not r.startswith("TEST|virtio-blk|") else "TEST|virtio-blk|FAIL|write_ok=0" for r in PASSING]
    run = run_harness("--disk-image", make_guest(lines(*failing[:-1], "RESULT|FAIL")), *TCG)
    assert run.returncode == 1
    page = Page((run.out_dir / "report.html").read_text())
    images = [a for t, a in page.tags if t == "img"]
    assert images and images[0]["src"].startswith("data:image/png;base64,")  # type: ignore[union-attr]
    assert "VIRTIO_BLK_FAILED" in page.words
    assert_rendered(browser_png(run.out_dir / "report.html", tmp_path), FAIL_RED)


def test_a_timeout_page(make_guest, run_harness: Run, tmp_path: Path) -> None:
    run = run_harness("--disk-image", make_guest(lines(*PASSING[:3])), "--accel", "tcg", "--timeout-seconds", "2")
    assert run.returncode == 5
    page = Page((run.out_dir / "report.html").read_text())
    assert "TIMEOUT" in page.words and "missing" in page.words  # the required markers that never came
    assert_rendered(browser_png(run.out_dir / "report.html", tmp_path), FAIL_RED)


@pytest.mark.attack
def test_whatever_the_guest_sends_stays_inert_in_the_page(make_guest, run_harness: Run, tmp_path: Path) -> None:
    hostile = "TEST|virtio-blk|FAIL|reason=<script>alert(1)</script>|note=<img src=x onerror=alert(2)>|x=\x1b[31m"
    message = b"<script>document.body.innerHTML='owned'</script>\xff\xfe\r\n" + lines(
        *[hostile if r.startswith("TEST|virtio-blk|") else r for r in PASSING[:-1]], "RESULT|FAIL")
    run = run_harness("--disk-image", make_guest(message), *TCG)
    assert run.returncode == 1
    html = (run.out_dir / "report.html").read_text()
    page = Page(html)
    assert not page.has("script") and [t for t, _ in page.tags if t == "img"] == ["img"]  # only the screenshot
    assert "<script>alert(1)</script>" in page.words  # shown as text
    assert "\\x1b[31m" in page.words and "\x1b" not in html and "\ufffd" in page.words
    png = browser_png(run.out_dir / "report.html", tmp_path)
    assert_rendered(png, FAIL_RED)  # the page was not replaced by the guest's script


def test_a_sound_capture_is_drawn_from_its_samples(tmp_path: Path) -> None:
    wav = tmp_path / "virtio-snd.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(b"".join(struct.pack("<hh", v, v) for v in
                                 (int(12000 * math.sin(i / 20) * (i / 48000)) for i in range(48000))))
    stats = analyze(wav).to_json()
    assert 350 < len(stats["envelope"]) <= 401  # type: ignore[arg-type]
    results = {"verdict": "PASS", "token": "PASS", "exit_code": 0, "tests": {}, "audio": stats,
               "artifacts": {"wav": str(wav)}}
    page = Page(render(results, tmp_path, extra_files=[wav]))
    polygons = [a for t, a in page.tags if t == "polygon"]
    assert polygons and len(polygons[0]["points"].split()) > 700  # type: ignore[union-attr]
    assert {"virtio-snd.wav"} <= {a["href"] for t, a in page.tags if t == "a"}  # type: ignore[misc]
    html = tmp_path / "report.html"
    html.write_text(render(results, tmp_path, extra_files=[wav]))
    assert_rendered(browser_png(html, tmp_path), WAVE_BLUE)  # a browser draws the waveform


WAVE_BLUE = (0x54, 0xAE, 0xFF)


def test_the_report_reads_only_the_end_of_a_huge_log(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    with log.open("wb") as out:
        out.truncate(300 * 1024 * 1024)  # 300 MB (sparse), then a last line
        out.seek(0, 2)
        out.write(b"\r\nAERO_VIRTIO_SELFTEST|RESULT|PASS\r\n")
    started = time.monotonic()
    text = tail(log)
    assert time.monotonic() - started < 0.5
    assert text.endswith("AERO_VIRTIO_SELFTEST|RESULT|PASS") and len(text) < 70_000


# -- progress -------------------------------------------------------------------------------------

def test_progress_on_a_terminal_is_one_line_redrawn_and_gone_before_the_verdict(make_guest, tmp_path: Path,
                                                                                ports: tuple[int, int]) -> None:
    image = make_guest(lines(*PASSING))
    master, slave = pty.openpty()
    proc = subprocess.Popen(harness_argv("--disk-image", image, *TCG, "--out-dir", tmp_path / "out", "--http-port",
                                         str(ports[0]), "--udp-port", str(ports[1])),
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    screen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break  # the child closed the terminal
        if not chunk:
            break
        screen += chunk
    os.close(master)
    proc.wait(timeout=30)
    assert proc.returncode == 0
    text = screen.decode("utf-8", "replace")
    assert "required markers" in text and "\x1b[2K" in text  # drawn, and redrawn in place by the terminal library
    assert text.rstrip().endswith("PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS")  # nothing after the verdict
    # What a person sees at the end (the bytes played on a terminal emulator): the status line is gone,
    # the verdict is the last line, and the cursor is visible again.
    terminal = pyte.Screen(200, 400)
    pyte.Stream(terminal).feed(text.replace("\n", "\r\n"))
    shown = [row.rstrip() for row in terminal.display if row.strip()]
    assert shown[-1] == "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS", shown[-3:]
    assert not any("required markers" in row for row in shown), shown
    assert not terminal.cursor.hidden


def test_progress_off_a_terminal_is_plain_lines_then_nothing_after_the_verdict(make_guest, tmp_path: Path,
                                                                               ports: tuple[int, int]) -> None:
    image = make_guest(lines(*PASSING[:4]))  # then it hangs: the periodic line shows
    proc = subprocess.run(harness_argv("--disk-image", image, "--accel", "tcg", "--timeout-seconds", "3",
                                       "--progress-interval", "0.5", "--out-dir", tmp_path / "out", "--http-port",
                                       str(ports[0]), "--udp-port", str(ports[1])),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 5
    output = proc.stdout.splitlines()
    progress = [line for line in output if line.startswith("INFO: progress: ")]
    assert len(progress) >= 6  # every 0.5 s and at each phase change
    assert any("selftest started" in line for line in progress)
    assert "\r" not in proc.stdout and "\x1b" not in proc.stdout  # never an animation in a log
    assert output[-1].startswith("FAIL: TIMEOUT: ")  # the last line, after every log line


def test_quiet_prints_the_verdict_and_nothing_else(make_guest, tmp_path: Path, ports: tuple[int, int]) -> None:
    proc = subprocess.run(harness_argv("--disk-image", make_guest(lines(*PASSING)), *TCG, "--quiet", "--out-dir",
                                       tmp_path / "out", "--http-port", str(ports[0]), "--udp-port", str(ports[1])),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"]
    assert json.loads((tmp_path / "out" / "results.json").read_text())["verdict"] == "PASS"


def test_the_verdict_record_goes_to_the_file_log_only(make_guest, run_harness: Run) -> None:
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), *TCG)
    assert "verdict" not in run.stderr.split("INFO: ")[-1]
    records = [json.loads(line) for line in (run.out_dir / "harness.log").read_text().splitlines()]
    verdicts = [r for r in records if r["message"] == "verdict"]
    assert verdicts and verdicts[-1]["token"] == "PASS"
