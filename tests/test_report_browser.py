"""The HTML report as a browser shows it: headless Chromium renders it, we read what it shows.

Skips without the ``chromium`` binary (Debian package ``chromium``), fails under CI=true.
"""

from __future__ import annotations

import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from driftline import cli
from tests.conftest import require_binary
from tests.test_compare import CURRENT_ROWS, REFERENCE_ROWS, SHIFTED, STABLE, make_frame

CHROMIUM_BINARY = "chromium"
CHROMIUM_MISSING = "needs the Debian package chromium (apt-get install chromium)"
CHROMIUM_TIMEOUT_S = 60
WINDOW_SIZE = "1200,1600"
# Bars are drawn at 55 % opacity over a white card: the colours a reader sees.
BAR_OPACITY = 0.55
REFERENCE_RGB = (0x4C, 0x72, 0xB0)
CURRENT_RGB = (0xDD, 0x84, 0x52)
COLOR_TOLERANCE = 6
MIN_BAR_PIXELS = 500

pytestmark = pytest.mark.integration


def chromium(binary: str, profile_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with nothing that reaches the network."""
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile_dir}", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True,
                          timeout=CHROMIUM_TIMEOUT_S)


class _Sections(HTMLParser):
    """Per ``section.column``: its attributes, its text and its SVG series' bar counts."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict] = {}
        self._current: dict | None = None
        self._series: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "section" and attributes.get("class") == "column":
            self._current = {"attrs": attributes, "text": [], "bars": {}}
            self.sections[str(attributes["data-column"])] = self._current
            self._depth = 0
        if self._current is None:
            return
        self._depth += 1
        if tag == "g" and attributes.get("data-series"):
            self._series = attributes["data-series"]
        if tag == "rect" and self._series is not None:
            bars = self._current["bars"]
            bars[self._series] = bars.get(self._series, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "g":
            self._series = None
        if tag == "section":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None and self._series is None:
            self._current["text"].append(data)


def _png_pixels(path: Path) -> tuple[int, int, int, bytes]:
    """(width, height, channels, raw pixels) of an 8-bit RGB(A) PNG, filters undone."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat = 8, b""
    width = height = channels = 0
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    out = bytearray(height * stride)
    previous = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + predictor) & 0xFF
        out[row * stride:(row + 1) * stride] = line
        previous = line
    return width, height, channels, bytes(out)


def _count_near(pixels: bytes, channels: int, rgb: tuple[int, int, int]) -> int:
    image = np.frombuffer(pixels, dtype=np.uint8).reshape(-1, channels)[:, :3].astype(int)
    return int((np.abs(image - np.array(rgb)) <= COLOR_TOLERANCE).all(axis=1).sum())


def _over_white(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = (round(BAR_OPACITY * v + (1 - BAR_OPACITY) * 255) for v in rgb)
    return r, g, b


@pytest.fixture
def report_path(tmp_path: Path) -> Path:
    reference = tmp_path / "reference.parquet"
    current = tmp_path / "current.csv"
    make_frame(REFERENCE_ROWS, shifted=False, seed=11).to_parquet(reference)
    make_frame(CURRENT_ROWS, shifted=True, seed=12).to_csv(current, index=False)
    path = tmp_path / "report.html"
    assert cli.main(["compare", str(reference), str(current), "--html", str(path)]) == 0
    return path


def test_chromium_shows_verdicts_and_both_distributions(report_path: Path,
                                                        tmp_path: Path) -> None:
    binary = require_binary(CHROMIUM_BINARY, CHROMIUM_MISSING)
    dom = chromium(binary, tmp_path / "chromium", "--dump-dom",
                   report_path.resolve().as_uri()).stdout
    parser = _Sections()
    parser.feed(dom)
    assert set(parser.sections) == SHIFTED | STABLE
    for column, section in parser.sections.items():
        text = " ".join(" ".join(section["text"]).split())
        expected = "drifted" if column in SHIFTED else "stable"
        assert section["attrs"]["data-drifted"] == str(column in SHIFTED).lower()
        assert expected in text.split(), (column, text)
        assert {"drifted", "stable"} - {expected} & set(text.split()) == set(), (column, text)
        assert "threshold" in text and "score" in text
        assert section["bars"].get("reference", 0) > 0, (column, section["bars"])
        assert section["bars"].get("current", 0) > 0, (column, section["bars"])
    assert "Dataset drift detected: 2 of 4 features drifted" in " ".join(dom.split())


def test_chromium_screenshot_shows_both_series(report_path: Path, tmp_path: Path) -> None:
    binary = require_binary(CHROMIUM_BINARY, CHROMIUM_MISSING)
    shot = tmp_path / "report.png"
    chromium(binary, tmp_path / "chromium", f"--screenshot={shot}",
             f"--window-size={WINDOW_SIZE}", report_path.resolve().as_uri())
    width, height, channels, pixels = _png_pixels(shot)
    assert (width, height) == tuple(int(v) for v in WINDOW_SIZE.split(","))
    for rgb in (REFERENCE_RGB, CURRENT_RGB):
        assert _count_near(pixels, channels, _over_white(rgb)) >= MIN_BAR_PIXELS, rgb
