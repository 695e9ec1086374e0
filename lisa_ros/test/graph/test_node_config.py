"""config/lisa.yaml, launch/lisa.launch.py, rviz/lisa.rviz and docs/node.md agree with the node's
parameter table.

`launch` and `launch_ros` are not installable here, so the launch file is compiled and read as
source (its argument names and the parameters it overrides), not executed.
"""

from __future__ import annotations

import ast
import py_compile
import re
from pathlib import Path

import pytest
import yaml

from lisa_ros.node.parameters import PARAMETERS, defaults, descriptor, spec, validate
from testbed import PACKAGE

NODE_DOC = PACKAGE.parent / "docs" / "node.md"  # the node's parameter table
CONFIG = PACKAGE / "config" / "lisa.yaml"
LAUNCH = PACKAGE / "launch" / "lisa.launch.py"
RVIZ = PACKAGE / "rviz" / "lisa.rviz"


def yaml_parameters() -> dict:
    document = yaml.safe_load(CONFIG.read_text())
    assert list(document) == ["/**"], "parameters must apply to the node whatever its name"
    return document["/**"]["ros__parameters"]


def test_yaml_holds_exactly_the_declared_parameters_with_their_defaults() -> None:
    in_yaml = yaml_parameters()
    assert list(in_yaml) == [parameter.name for parameter in PARAMETERS]
    for name, value in in_yaml.items():
        default = defaults()[name]
        # rcl refuses an int for a double parameter (and vice versa): types must match exactly.
        assert type(value) is type(default), f"{name}: {value!r} is not a {type(default).__name__}"
        assert value == default, (
            f"{name}: the YAML says {value!r}, the node's default is {default!r}"
        )
    assert validate(in_yaml.items()) is None


def readme_parameters() -> dict[str, object]:
    """Name -> default of each row of the node parameter table of docs/node.md, in its order."""
    lines = iter(NODE_DOC.read_text().splitlines())
    for line in lines:
        if line.strip() == "| parameter | default | what it does |":
            break
    else:
        raise AssertionError("docs/node.md has no '| parameter | default | what it does |' table")
    rows: dict[str, object] = {}
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if set(cells[0]) <= set("-: "):
            continue  # the header separator
        name, default = (re.fullmatch(r"`([^`]*)`", cell) for cell in cells[:2])
        assert name and default, f"docs/node.md row {line!r}: write `name` | `default` | ..."
        rows[name[1]] = yaml.safe_load(default[1])  # `true`, `512`, `1.0`, `""` as YAML reads them
    return rows


def test_readme_lists_exactly_the_declared_parameters_with_their_defaults() -> None:
    in_readme = readme_parameters()
    assert list(in_readme) == [parameter.name for parameter in PARAMETERS]
    for name, value in in_readme.items():
        default = defaults()[name]
        assert type(value) is type(default) and value == default, (
            f"{name}: docs/node.md says {value!r}, the node's default is {default!r}"
        )


def test_every_parameter_is_described_and_constrained() -> None:
    for parameter in PARAMETERS:
        described = descriptor(parameter)
        assert len(described.description) > 20, parameter.name
        if isinstance(parameter.default, (int, float)) and not isinstance(parameter.default, bool):
            assert described.integer_range or described.floating_point_range, parameter.name
        assert parameter.validate(parameter.default) is None, parameter.name


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("precision", "fp8", "not one of 'bf16', 'fp16', 'fp32'"),
        ("quantization", "4bit", "not one of '', 'int8', 'nf4'"),
        ("busy_policy", "lifo", "not one of 'queue', 'reject', 'preempt'"),
        ("image_transport", "theora", "not one of 'raw', 'compressed'"),
        ("device", "gpu", "not '', 'cpu', 'cuda' or 'cuda:<index>'"),
        ("device", "cuda:x", "cuda:<index>"),
        ("model", " xinlai/LISA-7B-v1", "whitespace"),
        ("max_rate_hz", -1.0, "outside [0.0, 1000.0]"),
        ("max_new_tokens", 0, "outside [1, 4096]"),
        ("max_queued_goals", 1000, "outside [0, 256]"),
        ("record_dir", "recorded", "not an absolute path"),
        ("record_dir", "/data/recorded ", "whitespace"),
    ],
)
def test_bad_values_are_refused_with_a_reason(name: str, value: object, reason: str) -> None:
    refused = validate([(name, value)])
    assert refused is not None and reason in refused and name in refused


def test_good_values_pass() -> None:
    assert validate([("device", "cuda:1"), ("quantization", "nf4"), ("max_rate_hz", 0.0)]) is None
    assert validate([("record_dir", "~/recorded"), ("record_dir", "/data/recorded")]) is None
    assert spec("busy_policy").choices == ("queue", "reject", "preempt")


def launch_source() -> ast.Module:
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


def module_constant(name: str) -> object:
    for node in launch_source().body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in {LAUNCH.name}")


def test_launch_file_compiles(tmp_path: Path) -> None:
    py_compile.compile(str(LAUNCH), cfile=str(tmp_path / "lisa.launch.pyc"), doraise=True)


def test_launch_arguments_are_the_documented_ones() -> None:
    declared = set(re.findall(r'DeclareLaunchArgument\(\s*"(\w+)"', LAUNCH.read_text()))
    for constant in ("MODEL_ARGUMENTS", "PARAMETER_ARGUMENTS", "TOPIC_ARGUMENTS"):
        declared |= set(module_constant(constant))
    required = {
        "namespace",
        "model",
        "vision_tower",
        "precision",
        "quantization",
        "device",
        "image",
        "camera_info",
        "depth",
        "instruction",
        "instruction_text",
        "adapter",
        "record_dir",
        "max_new_tokens",
        "params_file",
        "use_rviz",
    }
    assert required <= declared


def test_launch_overrides_only_declared_parameters_and_remaps_only_subscribed_topics() -> None:
    declared = {parameter.name for parameter in PARAMETERS}
    assert set(module_constant("MODEL_ARGUMENTS")) <= declared
    assert set(module_constant("PARAMETER_ARGUMENTS")) <= declared
    for name in module_constant("INTEGER_ARGUMENTS"):
        assert isinstance(spec(name).default, int), name
    assert set(module_constant("TOPIC_ARGUMENTS")) == {
        "image",
        "camera_info",
        "depth",
        "instruction",
    }
    assert module_constant("NODE_NAME") == "lisa"


def test_rviz_shows_the_node_outputs_under_the_default_name() -> None:
    rviz = yaml.safe_load(RVIZ.read_text())
    displays = {
        display["Topic"]["Value"]: display["Class"]
        for display in rviz["Visualization Manager"]["Displays"]
    }
    assert displays["/lisa/overlay"] == "rviz_default_plugins/Image"
    assert displays["/lisa/masks"] == "rviz_default_plugins/Image"
    assert displays["/lisa/markers"] == "rviz_default_plugins/MarkerArray"
    assert displays["/lisa/points"] == "rviz_default_plugins/PointCloud2"


def test_setup_installs_launch_config_and_rviz_files() -> None:
    setup = (PACKAGE / "setup.py").read_text()
    for pattern, folder in (
        ("launch/*.launch.py", LAUNCH),
        ("config/*.yaml", CONFIG),
        ("rviz/*.rviz", RVIZ),
    ):
        assert pattern in setup
        assert folder.match(pattern)
