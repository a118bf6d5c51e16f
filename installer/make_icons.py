"""Draw FedXray's application icon files (resources/icons/fedxray.png and .ico) with Pillow.

The design matches the icon the app draws in code (app/ui/icons.py): two lung fields and the trachea, light on a
blue rounded square. Run from the checkout: `.venv/bin/python installer/make_icons.py`; the output is
deterministic, so re-running it changes nothing.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "resources" / "icons"
SIZE = 256  # the PNG; the .ico holds every size in ICO_SIZES
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
SUPERSAMPLE = 4  # drawn at 4x and scaled down: smooth edges without relying on Pillow's anti-aliasing
TOP, BOTTOM = (0x1F, 0x5F, 0x99), (0x0E, 0x2F, 0x55)  # app.ui.style.ACCENT down to a darker blue
LIGHT = (0xEA, 0xF2, 0xFA, 255)


def _lung(cx: float, sign: int, s: float) -> list[tuple[float, float]]:
    """Outline of one lung field: a rounded apex, a broad base, the inner (heart) side cut in; `sign` -1 is left."""
    points = []
    for i in range(180):
        t = 2 * math.pi * i / 180
        x, y = math.sin(t), -math.cos(t)  # from the apex, clockwise
        rx = 0.15 * s * (0.78 + 0.22 * (y + 1) / 2)  # wider towards the base
        if x * sign < 0 and y > -0.2:  # the inner side below the hilum curves outwards (cardiac notch)
            x *= 1 - 0.35 * math.sin(math.pi * (y + 0.2) / 1.2)
        points.append((cx + rx * x, 0.58 * s + 0.29 * s * y))
    return points


def draw(size: int) -> Image.Image:
    """The icon at `size` pixels (RGBA, transparent outside the rounded square)."""
    s = size * SUPERSAMPLE
    gradient = Image.new("RGBA", (1, s))
    for y in range(s):
        f = y / (s - 1)
        gradient.putpixel((0, y), tuple(round(a + (b - a) * f) for a, b in zip(TOP, BOTTOM, strict=True)) + (255,))
    img = gradient.resize((s, s))
    mask = Image.new("L", (s, s), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, s - 1, s - 1), radius=round(s * 0.2), fill=255)
    img.putalpha(mask)

    d = ImageDraw.Draw(img)
    for sign in (-1, 1):
        d.polygon(_lung(s / 2 + sign * s * 0.2, sign, s), fill=LIGHT)
    width = max(SUPERSAMPLE, round(s * 0.06))
    d.line([(s / 2, s * 0.13), (s / 2, s * 0.40)], fill=LIGHT, width=width)  # trachea
    for sign in (-1, 1):  # main bronchi down to the hila
        d.line([(s / 2, s * 0.39), (s / 2 + sign * s * 0.09, s * 0.47)], fill=LIGHT, width=width)
    r = width / 2
    for x, y in [(s / 2, s * 0.13), (s / 2 - s * 0.09, s * 0.47), (s / 2 + s * 0.09, s * 0.47)]:
        d.ellipse((x - r, y - r, x + r, y + r), fill=LIGHT)  # round line caps
    return img.resize((size, size), Image.Resampling.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default: {OUT})")
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    big = draw(SIZE)
    big.save(out / "fedxray.png", optimize=True)
    # Each .ico size drawn at its own resolution: thin strokes stay visible at 16 px.
    frames = {n: draw(n) for n in ICO_SIZES}
    frames[SIZE].save(out / "fedxray.ico", sizes=[(n, n) for n in ICO_SIZES],
                      append_images=[frames[n] for n in ICO_SIZES if n != SIZE])
    for name in ("fedxray.png", "fedxray.ico"):
        print(f"{out / name}: {(out / name).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
