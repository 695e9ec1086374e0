"""Render the demo's RGB-D scene: a red box and a blue can on a table before a wall.

    python -m tools.render_demo_scene            # (in lisa_ros/) writes demo/scene/

A ray caster in numpy, so the colour image, the depth image and the camera model agree exactly:
every pixel's depth is the z distance (optical frame: x right, y down, z forward) of the surface
its colour comes from, in millimetres as an RGB-D driver publishes it (16UC1), and the pinhole
intrinsics are the ones the rays were cast with. A test can therefore check a 3D centroid
against the box's known place in metres. Our own work, under the repository's Apache-2.0 licence.

Writes ``color.png`` (RGB, saved as PNG), ``depth.png`` (16-bit, mm), ``box_mask.png`` (0/255, the
box's pixels) and ``scene.json`` (intrinsics, frame, the objects' places, the demo instruction).
:func:`render` takes the box's place, so :mod:`tools.make_demo_adapter` can render variants of
the scene.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from testbed import DEMO

SCENE_FOLDER = DEMO / "scene"
WIDTH, HEIGHT = 640, 480
FX = FY = 525.0  # a Kinect-like 640x480 camera
CX, CY = 319.5, 239.5
FRAME_ID = "camera_color_optical_frame"
INSTRUCTION = "Where is the red box?"
ANSWER = "Sure, it is the red box [SEG]."

TABLE_Y = 0.45  # the table top, 0.45 m below the camera (y points down)
WALL_Z = 2.2
LIGHT = np.array([-0.4, -1.0, -0.5]) / np.linalg.norm([-0.4, -1.0, -0.5])  # towards the light


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in the camera's optical frame, metres."""

    min_xyz: tuple[float, float, float]
    max_xyz: tuple[float, float, float]


@dataclass(frozen=True)
class Can:
    """A vertical cylinder standing on the table: centre (x, z), radius, top y."""

    x: float
    z: float
    radius: float
    top_y: float


DEMO_BOX = Box((-0.35, 0.20, 1.10), (-0.10, TABLE_Y, 1.35))
DEMO_CAN = Can(x=0.30, z=1.40, radius=0.10, top_y=0.10)

BOX_RGB = np.array([200, 30, 35])
CAN_RGB = np.array([40, 70, 190])
TABLE_RGB = np.array([150, 110, 70])
WALL_RGB = np.array([215, 210, 195])


def rays() -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the ray's x and y per metre of z (so the ray parameter is the depth itself)."""
    u, v = np.meshgrid(np.arange(WIDTH, dtype=np.float64), np.arange(HEIGHT, dtype=np.float64))
    return (u - CX) / FX, (v - CY) / FY


def _hit_box(dx: np.ndarray, dy: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """Depth of the first hit (inf for none) and its outward normal, by the slab method."""
    lo, hi = np.array(box.min_xyz), np.array(box.max_xyz)
    direction = np.stack([dx, dy, np.ones_like(dx)], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = lo / direction, hi / direction
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    entry, exit_ = near.max(axis=-1), far.min(axis=-1)
    hit = (entry <= exit_) & (entry > 0)
    axis = near.argmax(axis=-1)  # the slab entered last is the face hit
    normal = np.zeros(dx.shape + (3,))
    for k in range(3):  # the normal faces the camera: against the ray along that axis
        entered = axis == k
        normal[entered, k] = -np.sign(direction[entered, k])
    return np.where(hit, entry, np.inf), normal


def _hit_can(dx: np.ndarray, dy: np.ndarray, can: Can) -> tuple[np.ndarray, np.ndarray]:
    """Depth of the first hit on the can's side or top (inf for none) and its normal."""
    # side: (t dx - x)^2 + (t - z)^2 = r^2, a quadratic in t
    a = dx**2 + 1.0
    b = -2.0 * (dx * can.x + can.z)
    c = can.x**2 + can.z**2 - can.radius**2
    disc = b**2 - 4 * a * c
    with np.errstate(invalid="ignore"):
        t_side = (-b - np.sqrt(disc)) / (2 * a)
    y_side = t_side * dy
    side = (disc >= 0) & (y_side >= can.top_y) & (y_side <= TABLE_Y)
    # top: the disc y = top_y
    with np.errstate(divide="ignore"):
        t_top = np.where(dy > 0, can.top_y / dy, np.inf)
    top = (dx * t_top - can.x) ** 2 + (t_top - can.z) ** 2 <= can.radius**2
    depth = np.where(side, t_side, np.where(top, t_top, np.inf))
    at = np.where(np.isfinite(depth), depth, 0.0)  # no normal where the ray misses
    normal = np.stack(
        [(dx * at - can.x) / can.radius, np.zeros_like(dx), (at - can.z) / can.radius], -1
    )
    normal[top & ~side] = (0.0, -1.0, 0.0)
    return depth, normal


def render(box: Box = DEMO_BOX, can: Can = DEMO_CAN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scene's RGB uint8 image, uint16 depth in mm and the box's bool mask."""
    dx, dy = rays()
    with np.errstate(divide="ignore"):
        table = np.where(dy > 0, TABLE_Y / dy, np.inf)
    table[table > WALL_Z] = np.inf
    surfaces = [
        (np.full(dx.shape, WALL_Z), np.broadcast_to([0.0, 0.0, -1.0], dx.shape + (3,)), WALL_RGB),
        (table, np.broadcast_to([0.0, -1.0, 0.0], dx.shape + (3,)), TABLE_RGB),
        (*_hit_box(dx, dy, box), BOX_RGB),
        (*_hit_can(dx, dy, can), CAN_RGB),
    ]
    depths = np.stack([surface[0] for surface in surfaces])
    nearest = depths.argmin(axis=0)
    depth = depths.min(axis=0)
    rgb = np.zeros(dx.shape + (3,))
    for index, (_, normal, color) in enumerate(surfaces):
        # a little ambient light plus Lambert: faces of a box differ, the can looks round
        shade = 0.55 + 0.45 * np.clip(normal @ LIGHT, 0.0, 1.0)
        rgb[nearest == index] = (shade[..., None] * color)[nearest == index]
    # the wall darkens towards the floor, as a room's walls do
    rgb[nearest == 0] *= (1.0 - 0.25 * (dy[nearest == 0] - dy.min()) / np.ptp(dy))[:, None]
    depth_mm = np.round(depth * 1000.0).astype(np.uint16)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8), depth_mm, nearest == 2


def scene_record(box: Box = DEMO_BOX, can: Can = DEMO_CAN) -> dict:
    """What ``scene.json`` holds: how to read the images and where the objects are."""
    return {
        "licence": "Apache-2.0 (rendered by lisa_ros/tools/render_demo_scene.py)",
        "width": WIDTH,
        "height": HEIGHT,
        "frame_id": FRAME_ID,
        "k": [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0],
        "depth_unit": "mm",
        "color": "color.png",
        "depth": "depth.png",
        "instruction": INSTRUCTION,
        "answer": ANSWER,
        "target_mask": "box_mask.png",
        "objects": {"red box": asdict(box), "blue can": asdict(can)},
    }


def write_scene(folder: Path) -> None:
    rgb, depth_mm, box_mask = render()
    folder.mkdir(parents=True, exist_ok=True)
    compression = [cv2.IMWRITE_PNG_COMPRESSION, 9]
    cv2.imwrite(str(folder / "color.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), compression)
    cv2.imwrite(str(folder / "depth.png"), depth_mm, compression)
    cv2.imwrite(str(folder / "box_mask.png"), box_mask.astype(np.uint8) * 255, compression)
    (folder / "scene.json").write_text(json.dumps(scene_record(), indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=SCENE_FOLDER, help="(%(default)s)")
    write_scene(parser.parse_args().output)


if __name__ == "__main__":
    main()
