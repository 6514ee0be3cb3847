"""A step chart as a PNG, with the standard library only (zlib): the benchmark's one picture
did not justify matplotlib and its half-dozen dependencies.

Series are step functions: each point (x, y) holds y until the next point's x; the last holds
to the chart's right edge. Text is drawn with a 5x7 bitmap font of lowercase letters, digits
and a little punctuation (capitals are drawn lowercase)."""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Colour = tuple[int, int, int]
WHITE: Colour = (255, 255, 255)
BLACK: Colour = (0, 0, 0)
GRID: Colour = (225, 225, 225)
BLUE: Colour = (31, 119, 180)
ORANGE: Colour = (255, 127, 14)
GREY: Colour = (150, 150, 150)

# 5x7 glyphs, one hex digit pair per row, the top row first; bit 4 is the leftmost pixel.
GLYPHS: dict[str, str] = {
    " ": "00000000000000",
    "0": "0E11131519110E",
    "1": "040C040404040E",
    "2": "0E11010204081F",
    "3": "1F02040201110E",
    "4": "02060A121F0202",
    "5": "1F101E0101110E",
    "6": "0608101E11110E",
    "7": "1F010204080808",
    "8": "0E11110E11110E",
    "9": "0E11110F01020C",
    "a": "00000E010F110F",
    "b": "1010161911111E",
    "c": "00000E1010110E",
    "d": "01010D1311110F",
    "e": "00000E111F100E",
    "f": "0609081C080808",
    "g": "00000F110F010E",
    "h": "10101619111111",
    "i": "04000C0404040E",
    "j": "0200060202120C",
    "k": "10101214181412",
    "l": "0C04040404040E",
    "m": "00001A15151111",
    "n": "00001619111111",
    "o": "00000E1111110E",
    "p": "00001E111E1010",
    "q": "00000D130F0101",
    "r": "00001619101010",
    "s": "00000E100E011E",
    "t": "08081C08080906",
    "u": "0000111111130D",
    "v": "00001111110A04",
    "w": "0000111115150A",
    "x": "0000110A040A11",
    "y": "000011110F010E",
    "z": "00001F0204081F",
    ".": "00000000000C0C",
    ",": "000000000C0408",
    ":": "000C0C000C0C00",
    "-": "0000001F000000",
    "+": "0004041F040400",
    "=": "00001F001F0000",
    "(": "02040808080402",
    ")": "08040202020408",
    "/": "00010204081000",
    "%": "18190204081303",
    "'": "0C040800000000",
    "_": "0000000000001F",
}
UNKNOWN_GLYPH = "1F11111111111F"  # a box
GLYPH_WIDTH, GLYPH_HEIGHT = 5, 7


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: tuple[tuple[float, float], ...]  # (x, y), x ascending; a step function
    colour: Colour


class Canvas:
    """RGB pixels, white to start with."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._pixels = bytearray(WHITE * (width * height))

    def fill(self, x0: int, y0: int, x1: int, y1: int, colour: Colour) -> None:
        """The rectangle between the two corners, both included, clipped to the canvas."""
        left, right = sorted((x0, x1))
        top, bottom = sorted((y0, y1))
        left, top = max(left, 0), max(top, 0)
        right, bottom = min(right, self.width - 1), min(bottom, self.height - 1)
        if left > right:
            return
        row = bytes(colour) * (right - left + 1)
        for y in range(top, bottom + 1):
            start = (y * self.width + left) * 3
            self._pixels[start : start + len(row)] = row

    def text(self, x: int, y: int, text: str, colour: Colour = BLACK, scale: int = 2) -> None:
        """`text` with its top left corner at (x, y)."""
        for index, character in enumerate(text.lower()):
            rows = GLYPHS.get(character, UNKNOWN_GLYPH)
            left = x + index * (GLYPH_WIDTH + 1) * scale
            for row in range(GLYPH_HEIGHT):
                bits = int(rows[2 * row : 2 * row + 2], 16)
                for column in range(GLYPH_WIDTH):
                    if bits & (1 << (GLYPH_WIDTH - 1 - column)):
                        px, py = left + column * scale, y + row * scale
                        self.fill(px, py, px + scale - 1, py + scale - 1, colour)

    def png(self) -> bytes:
        raw = b"".join(
            b"\x00" + bytes(self._pixels[y * self.width * 3 : (y + 1) * self.width * 3])
            for y in range(self.height)
        )
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return (
            b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b"")
        )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def text_width(text: str, scale: int = 2) -> int:
    return len(text) * (GLYPH_WIDTH + 1) * scale - scale if text else 0


def nice_ticks(top: float, most: int = 6) -> list[float]:
    """Round tick values from 0 to at least `top` (1, 2 or 5 times a power of ten apart), at
    most `most` + 1 of them."""
    if not top > 0:
        return [0.0, 1.0]
    raw = top / most
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    count = math.ceil(top / step - 1e-9)
    return [round(n * step, 10) for n in range(count + 1)]


def tick_label(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.0e}"


MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 80, 30, 80, 60


def step_chart(
    title: str,
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    width: int = 960,
    height: int = 480,
) -> bytes:
    """The series as step lines on shared axes from 0, a legend above, as PNG bytes."""
    canvas = Canvas(width, height)
    plot_left, plot_right = MARGIN_LEFT, width - MARGIN_RIGHT
    plot_top, plot_bottom = MARGIN_TOP, height - MARGIN_BOTTOM
    xs = [x for one in series for x, _ in one.points]
    ys = [y for one in series for _, y in one.points]
    x_ticks, y_ticks = nice_ticks(max(xs, default=0.0)), nice_ticks(max(ys, default=0.0))
    x_top, y_top = x_ticks[-1], y_ticks[-1]

    def px(x: float) -> int:
        return plot_left + round((x / x_top) * (plot_right - plot_left))

    def py(y: float) -> int:
        return plot_bottom - round((y / y_top) * (plot_bottom - plot_top))

    for tick in y_ticks:
        canvas.fill(plot_left, py(tick), plot_right, py(tick), GRID)
        label = tick_label(tick)
        canvas.text(plot_left - 8 - text_width(label), py(tick) - GLYPH_HEIGHT, label)
    for tick in x_ticks:
        canvas.fill(px(tick), plot_top, px(tick), plot_bottom, GRID)
        label = tick_label(tick)
        canvas.text(px(tick) - text_width(label) // 2, plot_bottom + 8, label)
    canvas.fill(plot_left, plot_top, plot_left, plot_bottom, BLACK)
    canvas.fill(plot_left, plot_bottom, plot_right, plot_bottom, BLACK)
    canvas.text(plot_left, 12, title)
    canvas.text((plot_left + plot_right - text_width(x_label)) // 2, height - 24, x_label)
    canvas.text(plot_left, plot_top - 22, y_label, GREY)

    legend_x = plot_left
    for one in series:
        canvas.fill(legend_x, 44, legend_x + 19, 47, one.colour)
        canvas.text(legend_x + 26, 39, one.name)
        legend_x += 26 + text_width(one.name) + 30
        _draw_steps(canvas, one, px, py, plot_right)
    return canvas.png()


def _draw_steps(
    canvas: Canvas,
    series: Series,
    px: Callable[[float], int],
    py: Callable[[float], int],
    right: int,
) -> None:
    points = series.points
    for index, (x, y) in enumerate(points):
        x_end = px(points[index + 1][0]) if index + 1 < len(points) else right
        canvas.fill(px(x), py(y) - 1, x_end, py(y), series.colour)  # 2 pixels thick
        if index + 1 < len(points):
            canvas.fill(x_end - 1, py(y), x_end, py(points[index + 1][1]), series.colour)
