"""GIF encoding of an interpolation (the report's longest step at scale): each frame with its own median-cut palette
(before 2026-11-30) against one palette for all a GIF's frames (`analysis.drawing.gif_palette`), in one run.

    PYTHONPATH=. python benchmarks/bench_gif.py [--frames 9] [--side 299] [--repeats 3]

The frames blend two smooth noise images (as an interpolation's frames change little from one to the next); prints
the best time of each way, the GIF's size, and its mean absolute error against the frames (levels of 255).
"""
from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image, ImageFilter

from analysis.drawing import MARKERS, gif_palette, paletted


def gif(images: list[Image.Image]) -> bytes:
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=250, loop=0)
    return buf.getvalue()


def error(data: bytes, frames: list[Image.Image]) -> float:
    """Mean absolute difference (levels of 255) between the GIF's frames and the RGB frames."""
    decoded, errors = Image.open(io.BytesIO(data)), []
    for i, frame in enumerate(frames):
        decoded.seek(i)
        errors.append(np.abs(np.asarray(decoded.convert("RGB"), float) - np.asarray(frame, float)).mean())
    return float(np.mean(errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--side", type=int, default=299)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (args.side, args.side, 3)).astype(float) for _ in range(2))
    frames = [Image.fromarray(((1 - t) * a + t * b).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
              for t in np.linspace(0, 1, args.frames)]
    ways = {"own palette per frame": lambda: gif([paletted(f) for f in frames]),
            "one palette per GIF": lambda: gif([paletted(f, palette=p) for p in
                                                [gif_palette(frames, 256 - len(MARKERS))] for f in frames])}
    seconds = {}
    for name, encode in ways.items():
        timings = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            data = encode()
            timings.append(time.perf_counter() - started)
        seconds[name] = min(timings)
        print(f"{name}: {seconds[name] * 1e3:.0f} ms for {args.frames} frames of {args.side} px, "
              f"{len(data) / 1e3:.0f} KB, mean error {error(data, frames):.2f} of 255")
    print(f"speed-up {seconds['own palette per frame'] / seconds['one palette per GIF']:.1f}x")


if __name__ == "__main__":
    main()
