"""The dependency keys of lisa_ros/package.xml and lisa_ros_interfaces/package.xml against
rosdistro.

README.md's ROS install starts with `rosdep install --from-paths src --ignore-src -y`, which stops
at the first key rosdep cannot resolve. The keys are checked against a verbatim excerpt of
rosdistro's rosdep database (fixtures/rosdep, see its README.md):

* always: every key is a ROS package released in Kilted or an entry of rosdep/python.yaml, every
  Python key installs from apt on Ubuntu 24.04 and Debian 12 (rosdep's pip rules stop there, PEP
  668), and every runtime requirement of setup.py is either such a key or in the pip line that
  README.md and the package.xml comment give;
* with rosdep installed (`pip install rosdep`; skipped otherwise): the real `rosdep install
  --simulate` on the two package.xml files, offline, against the same data.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from testbed import FIXTURES, PACKAGE

REPO = PACKAGE.parent
PACKAGE_XMLS = [REPO / "lisa_ros" / "package.xml", REPO / "lisa_ros_interfaces" / "package.xml"]
SETUP_PY = REPO / "lisa_ros" / "setup.py"
README = REPO / "README.md"
FIXTURE = FIXTURES / "rosdep"
DISTRO = "kilted"
PLATFORMS = {
    "ubuntu": "noble",
    "debian": "bookworm",
}  # Kilted's and Jazzy's Tier 1 Ubuntu, and Debian

DEPEND_TAGS = (
    "depend",
    "build_depend",
    "build_export_depend",
    "buildtool_depend",
    "buildtool_export_depend",
    "exec_depend",
    "test_depend",
    "doc_depend",
)

#: setup.py requirements that package.xml declares through a rosdep key instead of pip.
PIP_NAME_TO_KEY = {
    "numpy": "python3-numpy",
    "pillow": "python3-pil",
    "opencv-python-headless": "python3-opencv",
    "protobuf": "python3-protobuf",
}
#: setup.py requirements that pip installs as a dependency of a package in the pip line.
INSTALLED_WITH = {"huggingface-hub": "transformers"}


def package_name(package_xml: Path) -> str:
    return ET.parse(package_xml).getroot().findtext("name").strip()


def dependency_keys(package_xml: Path) -> list[str]:
    root = ET.parse(package_xml).getroot()
    return [element.text.strip() for tag in DEPEND_TAGS for element in root.iter(tag)]


def workspace_packages() -> set[str]:
    return {package_name(path) for path in PACKAGE_XMLS}


def external_keys() -> dict[str, list[str]]:
    """Per package: the keys rosdep has to resolve (`--ignore-src` skips the workspace's own
    packages)."""
    own = workspace_packages()
    return {
        package_name(path): [key for key in dependency_keys(path) if key not in own]
        for path in PACKAGE_XMLS
    }


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def released_ros_packages() -> set[str]:
    """The package names rosdep derives from the distribution file (a repository without a package
    list releases the one package named after it)."""
    names = set()
    for repository, entry in load_yaml(FIXTURE / DISTRO / "distribution.yaml")[
        "repositories"
    ].items():
        release = entry.get("release")
        if release:
            names.update(release.get("packages", [repository]))
    return names


def python_rules() -> dict:
    return load_yaml(FIXTURE / "python.yaml")


def resolve(rule: dict, os_name: str, codename: str) -> tuple[str, list[str]] | None:
    """(installer, packages) of a rosdep rule for one platform, as rosdep reads it; None if
    unavailable."""
    rule = rule.get(os_name, rule.get("*"))
    if isinstance(rule, dict) and (codename in rule or "*" in rule):
        rule = rule.get(codename, rule.get("*"))
    if rule is None:
        return None
    if isinstance(rule, list):
        return "apt", rule
    if "pip" in rule:
        pip = rule["pip"]
        return "pip", pip["packages"] if isinstance(pip, dict) else pip
    if "apt" in rule:
        apt = rule["apt"]
        return "apt", apt["packages"] if isinstance(apt, dict) else apt
    return "apt", rule["packages"]


def pip_line(text: str) -> str:
    match = re.search(r"pip install torch [^\n]*", text)
    assert match, "no 'pip install torch ...' line"
    return match.group(0).strip()


def pip_names(line: str) -> set[str]:
    return {normalize(word.strip("'\"")) for word in line.split()[2:] if not word.startswith("-")}


def normalize(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def install_requires() -> list[str]:
    for node in ast.walk(ast.parse(SETUP_PY.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no install_requires")


# --------------------------------------------------------------------------------------------------
# Always: the keys against the data


def test_the_fixture_is_rosdistro_data():
    distribution = load_yaml(FIXTURE / DISTRO / "distribution.yaml")
    assert distribution["type"] == "distribution" and distribution["version"] == 2
    assert distribution["release_platforms"]["ubuntu"] == ["noble"]
    index = load_yaml(FIXTURE / "index.yaml")
    assert index["distributions"][DISTRO]["distribution"] == [f"{DISTRO}/distribution.yaml"]


def test_every_key_is_a_rosdep_key():
    known = released_ros_packages() | set(python_rules())
    unknown = {
        package: [key for key in keys if key not in known]
        for package, keys in external_keys().items()
    }
    unknown = {package: keys for package, keys in unknown.items() if keys}
    assert not unknown, (
        f"keys rosdep cannot resolve (no rosdistro entry): {unknown}; "
        "use a key of rosdep/python.yaml or "
        "base.yaml, or install the package with pip as README.md says"
    )


@pytest.mark.parametrize("os_name", sorted(PLATFORMS))
def test_python_keys_install_from_the_system_package_manager(os_name):
    rules = python_rules()
    keys = sorted({key for keys in external_keys().values() for key in keys if key in rules})
    assert keys, "no Python key at all: the fixture or the parsing is wrong"
    resolved = {key: resolve(rules[key], os_name, PLATFORMS[os_name]) for key in keys}
    unavailable = [key for key, how in resolved.items() if how is None]
    assert not unavailable, f"no rule for {os_name} {PLATFORMS[os_name]}: {unavailable}"
    # rosdep's pip rules run a global 'pip install' that stops on Python >= 3.11 system installs
    # (PEP 668) unless PIP_BREAK_SYSTEM_PACKAGES=1: README.md's plain 'rosdep install' has to work
    # without it.
    through_pip = {key: how for key, how in resolved.items() if how[0] != "apt"}
    assert not through_pip, f"keys that rosdep installs with pip on {os_name}: {through_pip}"


def test_the_rules_are_read_as_rosdep_reads_them():
    rules = python_rules()
    assert resolve(rules["python3-numpy"], "ubuntu", "noble") == ("apt", ["python3-numpy"])
    assert resolve(rules["python3-pytorch-pip"], "ubuntu", "noble") == (
        "pip",
        ["torch", "torchvision"],
    )
    assert resolve(rules["python3-huggingface-hub-pip"], "debian", "bookworm") == (
        "pip",
        ["huggingface_hub"],
    )
    assert resolve(rules["python3-torch"], "ubuntu", "focal") is None


def test_package_xml_names_the_readme_pip_line():
    line = pip_line((REPO / "lisa_ros" / "package.xml").read_text())
    assert line in README.read_text(), (
        f"README.md no longer has the pip line package.xml documents: {line}"
    )


def test_every_runtime_requirement_is_a_key_or_in_the_pip_line():
    keys = {key for keys in external_keys().values() for key in keys}
    pip = pip_names(pip_line(README.read_text()))
    missing = []
    for requirement in install_requires():
        name = normalize(requirement)
        if name in PIP_NAME_TO_KEY:
            if PIP_NAME_TO_KEY[name] not in keys:
                missing.append(f"{name} (package.xml key {PIP_NAME_TO_KEY[name]})")
        elif INSTALLED_WITH.get(name, name) not in pip:
            missing.append(f"{name} (README.md's pip line)")
    assert not missing, f"setup.py requirements that a ROS install does not get: {missing}"


# --------------------------------------------------------------------------------------------------
# With rosdep: the real thing, offline


def rosdep_command() -> list[str]:
    if importlib.util.find_spec("rosdep2") is not None:
        return [sys.executable, "-m", "rosdep2"]
    executable = shutil.which("rosdep")
    if executable:
        return [executable]
    pytest.skip(
        "rosdep is not installed (pip install rosdep): "
        "the offline 'rosdep install --simulate' is not run"
    )


@pytest.fixture(scope="module")
def rosdep(tmp_path_factory):
    """Runs rosdep on the fixture's database: `rosdep(*args)` -> CompletedProcess."""
    command = rosdep_command()
    home = tmp_path_factory.mktemp("rosdep")
    sources = home / "sources.list.d"
    sources.mkdir()
    (sources / "10-lisa-fixture.list").write_text(f"yaml {(FIXTURE / 'python.yaml').as_uri()}\n")
    # Nothing of this machine's ROS set-up: with --ignore-src, rosdep takes packages found through
    # AMENT_PREFIX_PATH (the graph tests put the venv there) as installed and skips their keys.
    prefixes = ("ROS_", "ROSDEP_", "ROSDISTRO_", "AMENT_", "COLCON_", "CMAKE_PREFIX_PATH")
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    env.update(
        ROSDEP_SOURCE_PATH=str(sources),
        ROS_HOME=str(home / "ros_home"),
        ROSDISTRO_INDEX_URL=(FIXTURE / "index.yaml").as_uri(),
    )

    def run(*args: str | os.PathLike) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command, *map(str, args)], env=env, capture_output=True, text=True, timeout=120
        )

    update = run("update", "--rosdistro", DISTRO)
    assert update.returncode == 0, update.stdout + update.stderr
    return run


def workspace(root: Path, package_xmls: dict[str, str]) -> Path:
    for name, text in package_xmls.items():
        (root / name).mkdir(parents=True)
        (root / name / "package.xml").write_text(text)
    return root


def simulate(rosdep, path: Path, os_name: str) -> subprocess.CompletedProcess:
    # --reinstall lists every package, whether or not this machine happens to have it
    return rosdep(
        "install", "--from-paths", path, "--ignore-src", "--simulate", "--reinstall", "-y",
        "--rosdistro", DISTRO, "--os", f"{os_name}:{PLATFORMS[os_name]}",
    )  # fmt: skip


@pytest.mark.parametrize("os_name", sorted(PLATFORMS))
def test_rosdep_install_resolves_every_key(rosdep, tmp_path, os_name):
    ws = workspace(tmp_path / "ws", {package_name(path): path.read_text() for path in PACKAGE_XMLS})
    result = simulate(rosdep, ws, os_name)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    commands = re.findall(r"^\s+apt-get install -y (\S+)$", result.stdout, re.MULTILINE)
    rules = python_rules()
    expected = set()
    for key in {key for keys in external_keys().values() for key in keys}:
        if key in rules:
            expected.update(resolve(rules[key], os_name, PLATFORMS[os_name])[1])
        else:
            expected.add(f"ros-{DISTRO}-{key.replace('_', '-')}")
    assert set(commands) == expected, output
    assert "#[pip]" not in result.stdout, output


@pytest.mark.parametrize(
    "key",
    [
        "python3-accelerate-pip",
        "python3-peft-pip",
        "python3-safetensors-pip",
        "python3-segment-anything-pip",
    ],
)
def test_rosdep_install_fails_on_a_key_rosdistro_does_not_have(rosdep, tmp_path, key):
    """The keys of the original package.xml that made README.md's `rosdep install` fail."""
    text = (REPO / "lisa_ros" / "package.xml").read_text()
    broken = text.replace("<test_depend>", f"<exec_depend>{key}</exec_depend>\n  <test_depend>", 1)
    assert key in broken
    ws = workspace(
        tmp_path / "ws", {"lisa_ros": broken, "lisa_ros_interfaces": PACKAGE_XMLS[1].read_text()}
    )
    result = simulate(rosdep, ws, "ubuntu")
    assert result.returncode != 0
    assert f"Cannot locate rosdep definition for [{key}]" in result.stderr, (
        result.stdout + result.stderr
    )
