"""The jobs this image can run. The deployment's settings say which runtime each one gets."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

Job = Callable[[dict[str, Any], Path], None]


class JobInputError(ValueError):
    """The job's input is not what the job needs (the caller's mistake, not a crash)."""


def checksum(payload: dict[str, Any], workdir: Path) -> None:
    """Light: hashes its input (``{"text": ...}`` or any JSON) with several algorithms."""
    data = (
        payload["text"].encode()
        if isinstance(payload.get("text"), str)
        else json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    )
    digests = {name: hashlib.new(name, data).hexdigest() for name in ("md5", "sha1", "sha256")}
    (workdir / "checksums.json").write_text(json.dumps({"bytes": len(data), **digests}, indent=2))


def render(payload: dict[str, Any], workdir: Path) -> None:
    """Heavy stand-in: renders a Mandelbrot image (PGM) per frame, CPU-bound, several files.

    Input: ``{"width": 320, "height": 240, "frames": 3, "iterations": 200}``.
    """
    width = int(payload.get("width", 320))
    height = int(payload.get("height", 240))
    frames = int(payload.get("frames", 3))
    iterations = int(payload.get("iterations", 200))
    if not (1 <= width <= 4096 and 1 <= height <= 4096 and 1 <= frames <= 100):
        raise JobInputError("width/height must be 1..4096 and frames 1..100")
    if not 1 <= iterations <= 10_000:
        raise JobInputError("iterations must be 1..10000")
    for frame in range(frames):
        zoom = 1.5**frame
        pixels = bytearray()
        for y in range(height):
            for x in range(width):
                c = complex(
                    -0.745 + (x - width / 2) * 3.0 / (width * zoom),
                    0.1 + (y - height / 2) * 2.0 / (height * zoom),
                )
                z = 0j
                n = 0
                while abs(z) <= 2 and n < iterations:
                    z = z * z + c
                    n += 1
                pixels.append(int(255 * math.sqrt(n / iterations)))
        header = f"P5 {width} {height} 255\n".encode()
        (workdir / f"frame-{frame:03d}.pgm").write_bytes(header + bytes(pixels))
    (workdir / "manifest.json").write_text(
        json.dumps({"frames": frames, "width": width, "height": height}, indent=2)
    )


JOBS: dict[str, Job] = {"checksum": checksum, "render": render}
