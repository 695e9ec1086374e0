"""Train the demo's toy adapter: the tiny random LISA taught to answer "the red box [SEG]".

    python -m tools.make_demo_adapter           # (in lisa_ros/) rewrites demo/red_box_adapter/

The tiny checkpoint (lisa_ros/fixtures/lisa-tiny-7b) has random weights: asked anything it
babbles and never says ``[SEG]``, so the node would show no mask. This script writes a small
training folder in the format the node records (:func:`lisa_ros.data.write_sample`: the demo
scene and a few renderings with the box elsewhere, each with the demo instruction, the answer
``Sure, it is the red box [SEG].`` and the box's mask) and runs ``lisa-finetune`` on it with a
fixed seed and step count. Nothing else: the adapter is what any user's lisa-finetune run writes.

It is a toy. It shows the plumbing (instruction in, ``[SEG]`` out, a mask, a 3D centroid, an
overlay) on a CPU in seconds; it has memorised one sentence about one rendered scene and knows
nothing else. Real answers need a real checkpoint (``model:=xinlai/LISA-7B-v1`` on a GPU).

Reproducible: the same command on the same torch build gives the same adapter (fixed seed, fp32,
one process); another CPU or torch version may differ in the last bits, not in the answer.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

from lisa_ros.data import write_sample
from testbed import DEMO
from testbed.tiny_lisa import FIXTURE as TINY
from tools.render_demo_scene import ANSWER, DEMO_BOX, INSTRUCTION, Box, render

ADAPTER_NAME = "red_box_adapter"
ADAPTER_FOLDER = DEMO / ADAPTER_NAME

# The recipe. Batches of 2 from 4 scenes; 150 steps bring the text loss near 0, so greedy
# decoding gives the answer word for word. The rest is the test suite's tiny fine-tuning set-up.
STEPS = 150
SEED = 0
SHIFTS = ((0.0, 0.0), (0.25, 0.05), (-0.05, 0.35), (0.2, 0.4))  # box moved (x, z) in metres


def finetune_command(steps: int) -> list[str]:
    """The lisa-finetune command line of the recipe, run in the folder of
    :func:`write_training_folders` (relative paths: the adapter's record names no temporary
    folder, so two runs write the same files)."""
    return [
        sys.executable, "-m", "lisa_ros.cli.finetune",
        "--model", "lisa-tiny-7b/checkpoint", "--vision-tower", "lisa-tiny-7b/clip",
        "--precision", "fp32", "--device", "cpu",
        "--data", "train", "--eval-data", "eval", "--output", ADAPTER_NAME,
        "--steps", str(steps), "--seed", str(SEED), "--batch-size", "2",
        "--grad-accumulation", "1", "--lr", "5e-3", "--warmup-steps", "5",
        "--questions", "as-is", "--save-every", "0", "--no-gradient-checkpointing",
    ]  # fmt: skip


def shifted(box: Box, dx: float, dz: float) -> Box:
    (x0, y0, z0), (x1, y1, z1) = box.min_xyz, box.max_xyz
    return Box((x0 + dx, y0, z0 + dz), (x1 + dx, y1, z1 + dz))


def write_training_folders(root: Path) -> None:
    """``root/train``: the scene with the box at each of SHIFTS; ``root/eval``: the demo scene;
    ``root/lisa-tiny-7b``: a link to the tiny checkpoint.

    The evaluation scene is one of the training scenes: the score says the adapter learnt what it
    was shown, not that it generalises.
    """
    train, evaluation = root / "train", root / "eval"
    (root / "lisa-tiny-7b").symlink_to(TINY)
    for index, (dx, dz) in enumerate(SHIFTS):
        rgb, _, mask = render(box=shifted(DEMO_BOX, dx, dz))
        write_sample(train, f"scene_{index}", rgb, mask, INSTRUCTION, ANSWER)
    rgb, _, mask = render()
    write_sample(evaluation, "demo_scene", rgb, mask, INSTRUCTION, ANSWER)


def mark_as_toy(card: Path) -> None:
    """Say at the top of lisa-finetune's card what this adapter is for."""
    text = card.read_text(encoding="utf-8")
    title_end = text.index("\n", text.index("# ")) + 1
    card.write_text(text[:title_end] + TOY_NOTE + text[title_end:], encoding="utf-8")


TOY_NOTE = """
**The lisa_ros demo's toy adapter** (made by `lisa_ros/tools/make_demo_adapter.py`; see
`../README.md`). `lisa-tiny-7b` is the repository's tiny LISA with random weights
(`lisa_ros/fixtures/lisa-tiny-7b`). This adapter taught it one sentence about one rendered
scene, so the demo shows the plumbing (an answer with `[SEG]`, a mask, a 3D centroid, an
overlay) on a CPU. It knows nothing else; it says nothing about what LISA can do.
"""


def make_adapter(output: Path, steps: int = STEPS) -> None:
    """Train the adapter into ``output`` (replaced if it exists)."""
    with tempfile.TemporaryDirectory(prefix="lisa_demo_adapter_") as work:
        write_training_folders(Path(work))
        command = finetune_command(steps)
        print("+", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, cwd=work)
        mark_as_toy(Path(work) / ADAPTER_NAME / "README.md")
        if output.exists():
            shutil.rmtree(output)
        shutil.copytree(Path(work) / ADAPTER_NAME, output)
    print(f"adapter written to {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ADAPTER_FOLDER, help="(%(default)s)")
    parser.add_argument("--steps", type=int, default=STEPS, help="(%(default)s)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    make_adapter(args.output, args.steps)


if __name__ == "__main__":
    main()
