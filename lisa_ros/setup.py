"""ament_python package of lisa_ros: the ROS-free LISA core (lisa_ros.model) and the ROS 2 node."""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "lisa_ros"
# The demo (demo.launch.py): its scene, its toy adapter and the tiny checkpoint they run on
# (demo/lisa-tiny-7b links to fixtures/lisa-tiny-7b; only the model and its CLIP are installed).
DEMO_FOLDERS = (
    "demo",
    "demo/scene",
    "demo/red_box_adapter",
    "demo/lisa-tiny-7b/checkpoint",
    "demo/lisa-tiny-7b/clip",
)

setup(
    name=PACKAGE,
    version="0.1.0",
    # Only lisa_ros: benchmarks, testbed and tools beside it run from this folder, uninstalled.
    packages=find_packages(include=["lisa_ros", "lisa_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml", "LICENSE"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        *(
            (f"share/{PACKAGE}/{folder}", [p for p in glob(f"{folder}/*") if os.path.isfile(p)])
            for folder in DEMO_FOLDERS
        ),
    ],
    python_requires=">=3.10",
    # Ranges for installing into your own environment; `make setup` installs requirements/dev.lock.
    # numpy, Pillow and OpenCV floors: Ubuntu 24.04's apt versions under ROS Jazzy, tested by CI
    # (scripts/test_jazzy.sh) beside the lock's and the newest (scripts/test_newest.sh); no upper
    # bound, since no release is known to break us. torch and transformers floors: see
    # lisa_ros/model/versions.py (checked again at load).
    install_requires=[
        "numpy>=1.26",
        "pillow>=10.2",
        "opencv-python-headless>=4.6",
        "torch>=2.6",
        "torchvision",  # segment-anything imports it
        "transformers>=5.24,<6",
        "accelerate",
        "peft>=0.13",
        "safetensors",
        "huggingface_hub",
        "sentencepiece",
        "protobuf",
        "segment-anything",
        "tqdm",  # lisa-eval's progress bar (transformers brings it too)
    ],
    extras_require={
        "quantization": ["bitsandbytes>=0.45"],
        # ruff pinned: another release may format differently, and make test checks the format.
        "test": ["pytest", "ruff==0.17.6"],
    },
    zip_safe=True,
    maintainer="lisa_ros maintainers",
    maintainer_email="maintainers@lisa-ros.dev",
    description="LISA reasoning segmentation as a ROS 2 node, with a ROS-free inference core.",
    license="Apache-2.0",
    license_files=["LICENSE"],
    entry_points={
        "console_scripts": [
            "lisa_node = lisa_ros.node.entry_point:main",
            "lisa-segment = lisa_ros.cli.segment:main",
            "lisa-eval = lisa_ros.cli.evaluate:main",
            "lisa-finetune = lisa_ros.cli.finetune:main",
            "lisa-ask = lisa_ros.cli.ask:main",
            "rgbd_player = lisa_ros.node.rgbd_player:main",
        ],
    },
)
