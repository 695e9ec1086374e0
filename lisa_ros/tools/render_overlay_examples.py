"""Draw the overlay of each example scene into OUT_DIR, for a person to look at.

    python -m tools.render_overlay_examples OUT_DIR        # in lisa_ros/

The scenes are real photographs with hand-made masks and LISA-style answers
(``lisa_ros/fixtures/photos``, see its README) plus ``picking``: a synthetic picking scene
like the one reported from a robot (an orange book and a white package in a red tote), where a red
tint over the orange book used to be invisible. Writes ``<scene>.png`` per scene. The copies
committed in ``lisa_ros/fixtures/photos/overlays`` are refreshed the same way
(``test_visualization.py`` also writes them to ``$LISA_OVERLAY_ARTEFACTS`` when that is set).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from lisa_ros.visualization import draw_overlay
from testbed import FIXTURES

PHOTOS = FIXTURES / "photos"

RED_TOTE = (190, 25, 30)
ORANGE_BOOK = (235, 120, 40)
WHITE_PACKAGE = (235, 235, 228)


def photo_scene(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """A photograph of ``PHOTOS``: RGB uint8 image, ``(N, H, W)`` bool masks and the answer."""
    scene = json.loads((PHOTOS / "scenes.json").read_text())[name]
    bgr = cv2.imread(str(PHOTOS / scene["photo"]), cv2.IMREAD_COLOR)
    masks = [
        cv2.imread(str(PHOTOS / f"{name}_mask_{k}.png"), cv2.IMREAD_GRAYSCALE)
        for k in range(len(scene["masks"]))
    ]
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.stack(masks) > 0, scene["answer"]


def picking_scene(height: int = 480, width: int = 640) -> tuple[np.ndarray, np.ndarray, str]:
    """A red tote on a grey floor holding an orange book and a white package, seen from above.

    Flat colours with shading and sensor noise; mask 0 is the book (drawn red: the case that was
    invisible), mask 1 the package. The book lies near the bottom of the image, where the answer
    band used to be.
    """
    rng = np.random.default_rng(7)
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = (120, 118, 112)  # floor
    scale_x, scale_y = width / 640, height / 480

    def box(x0: int, y0: int, x1: int, y1: int) -> tuple[slice, slice]:  # in 640x480 coordinates
        return slice(round(y0 * scale_y), round(y1 * scale_y)), slice(
            round(x0 * scale_x), round(x1 * scale_x)
        )

    image[box(40, 30, 600, 470)] = RED_TOTE
    image[box(60, 50, 580, 450)] = np.array(RED_TOTE) * 0.8  # the tote's floor, in its own shadow
    book = np.zeros((height, width), dtype=np.uint8)
    corners = np.array([(150, 300), (390, 250), (420, 420), (180, 445)], dtype=np.float32) * (
        scale_x,
        scale_y,
    )
    cv2.fillPoly(book, [corners.round().astype(np.int32)], 1)
    image[book > 0] = ORANGE_BOOK
    package = np.zeros((height, width), dtype=np.uint8)
    package[box(380, 70, 550, 230)] = 1
    image[package > 0] = WHITE_PACKAGE
    y, x = np.mgrid[:height, :width]
    # light from the top left
    shading = 1.0 - 0.25 * ((x / width - 0.3) ** 2 + (y / height - 0.2) ** 2)
    image = image * shading[..., None] + rng.normal(0, 2, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    answer = (
        "The orange book [SEG] lies in the red tote beside the white package [SEG]; "
        "pick the book first."
    )
    return image, np.stack([book > 0, package > 0]), answer


def scenes() -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    names = json.loads((PHOTOS / "scenes.json").read_text())
    return {"picking": picking_scene(), **{name: photo_scene(name) for name in names}}


def render(out_dir: Path) -> list[Path]:
    """Write ``<scene>.png`` for every scene into ``out_dir`` (created); return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (image, masks, answer) in scenes().items():
        path = out_dir / f"{name}.png"
        overlay = draw_overlay(image, masks, answer)
        if not cv2.imwrite(
            str(path), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]
        ):
            raise OSError(f"cannot write {path}")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder to write into")
    for written in render(parser.parse_args().out_dir):
        print(written)


if __name__ == "__main__":
    main()
