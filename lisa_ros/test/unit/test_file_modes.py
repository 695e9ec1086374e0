"""Files lisa_ros writes atomically get the umask's mode, as a plain write would: a labelling tool
or a training job running as another user can read a recording, an adapter or a report."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from file_mode_check import files_with_other_modes, umask

from lisa_ros.data import load_dataset, write_atomically, write_sample
from lisa_ros.file_modes import apply_default_mode, current_umask, default_file_mode

UMASKS = [0o022, 0o027, 0o002, 0o077]


@pytest.mark.parametrize("value", UMASKS)
def test_the_umask_is_read_without_being_changed(value):
    with umask(value):
        assert current_umask() == value
        assert default_file_mode() == 0o666 & ~value
        assert os.umask(value) == value  # still what it was set to


@pytest.mark.parametrize("value", UMASKS)
def test_an_atomic_write_has_the_mode_of_a_plain_write(tmp_path, value):
    with umask(value):
        plain = tmp_path / "plain.json"
        plain.write_bytes(b"{}")
        atomic = write_atomically(tmp_path / "atomic.json", lambda file: file.write(b"{}"))
        assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
        assert files_with_other_modes(tmp_path) == {}


def test_a_recorded_sample_is_readable_by_others(tmp_path):
    image = np.zeros((20, 30, 3), np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:10] = 1
    mask[0, 0] = 255  # an ignore region: one more file
    with umask(0o022):
        write_sample(tmp_path, "a", image, mask, "the box", answer="It is [SEG].")
    assert (tmp_path / "a_ignore.png").exists()
    assert len(load_dataset(tmp_path)) == 1
    assert files_with_other_modes(tmp_path) == {}
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_safetensors_files_are_given_the_umask_mode(tmp_path):
    """safetensors writes owner-only files (why save_adapter needs apply_default_mode)."""
    import torch
    from safetensors.torch import save_file

    with umask(0o027):
        save_file({"w": torch.zeros(2)}, tmp_path / "weights.safetensors")
        (tmp_path / "info.json").write_text("{}")
        apply_default_mode(tmp_path)
        assert files_with_other_modes(tmp_path) == {}
    assert stat.S_IMODE((tmp_path / "weights.safetensors").stat().st_mode) == 0o640
