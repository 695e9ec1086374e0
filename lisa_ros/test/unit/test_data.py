"""lisa_ros.data: ReasonSeg and simple-format datasets, rasterised like the LISA authors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from lisa_ros.data import (
    DatasetError,
    detect_format,
    load_dataset,
    rasterize_shapes,
    write_sample,
)
from testbed import FIXTURES

FIXTURE = FIXTURES / "reasonseg"
H, W = 30, 40


def rectangle(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Pixels of the polygon [[x0,y0],[x1,y0],[x1,y1],[x0,y1]]: both corners included."""
    yy, xx = np.mgrid[0:H, 0:W]
    return (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)


def triangle(x0: int, y0: int, side: int) -> np.ndarray:
    """Pixels of [[x0,y0],[x0+side,y0],[x0,y0+side]]: the 45 degree edge included."""
    yy, xx = np.mgrid[0:H, 0:W]
    return (xx >= x0) & (yy >= y0) & ((xx - x0) + (yy - y0) <= side)


def write_reasonseg(folder: Path, name: str, anno: object, size=(H, W)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{name}.jpg"), np.full((*size, 3), 128, np.uint8))
    path = folder / f"{name}.json"
    path.write_text(anno if isinstance(anno, str) else json.dumps(anno))
    return path


def shape(label: str, points: list) -> dict:
    return {"label": label, "points": points}


def anno(*shapes: dict, text=("the thing",), is_sentence=False) -> dict:
    return {"text": list(text), "is_sentence": is_sentence, "shapes": list(shapes)}


def test_fixture_loads_sorted_with_hand_computed_masks() -> None:
    samples = load_dataset(FIXTURE)
    assert detect_format(FIXTURE) == "reasonseg"
    assert [s.name for s in samples] == ["a_shelf", "b_cup"]
    shelf, cup = samples

    assert shelf.image_path == FIXTURE / "a_shelf.jpg"
    assert shelf.instructions == [
        "the box that holds the screws",
        "where should I put the screws back?",
    ]
    assert shelf.is_sentence is True and shelf.answer is None
    # Two targets; float points truncate toward zero (20.7 -> 20, 13.6 -> 13); "Flag" is skipped
    # even though its points leave the image.
    expected = (rectangle(5, 5, 14, 9) | triangle(20, 3, 10)).astype(np.uint8)
    assert shelf.mask.dtype == np.uint8 and shelf.mask.shape == (H, W)
    np.testing.assert_array_equal(shelf.mask, expected)

    assert cup.instructions == ["the cup"] and cup.is_sentence is False
    # Largest first: the target rectangle, the ignore strip on the right edge (x = 40 and y = 30
    # lie on the border, clipped), the ignore hole, then the small target inside the hole.
    expected = np.zeros((H, W), np.uint8)
    expected[rectangle(2, 2, 25, 20)] = 1
    expected[rectangle(28, 0, 39, 29)] = 255
    expected[rectangle(10, 10, 19, 15)] = 255
    expected[rectangle(12, 12, 14, 13)] = 1
    np.testing.assert_array_equal(cup.mask, expected)


def test_image_is_lazy_rgb(tmp_path: Path) -> None:
    folder = tmp_path / "val"
    write_reasonseg(folder, "s", anno(shape("target", [[0, 0], [3, 0], [0, 3]])))
    bgr = np.zeros((H, W, 3), np.uint8)
    bgr[..., 2] = 250
    # Lossless PNG content under a .jpg name: cv2 reads by content, so colours are exact.
    cv2.imwrite(str(folder / "s.png"), bgr)
    (folder / "s.png").replace(folder / "s.jpg")
    sample = load_dataset(folder)[0]
    image = sample.image()
    assert image.dtype == np.uint8 and image.shape == (H, W, 3)
    assert (image[..., 0] == 250).all() and (image[..., 2] == 0).all()
    (folder / "s.jpg").unlink()
    with pytest.raises(DatasetError, match="s.jpg"):
        sample.image()


def test_smaller_shape_wins_whatever_its_label() -> None:
    # A small target listed before a larger ignore region that covers it is drawn last: the
    # authors sort by area, not by label.
    shapes = [
        shape("target", [[5, 5], [8, 5], [8, 8], [5, 8]]),
        shape("ignore", [[0, 0], [20, 0], [20, 20], [0, 20]]),
        shape("target", [[30, 0], [35, 0], [35, 3], [30, 3]]),
    ]
    mask = rasterize_shapes(shapes, H, W)
    expected = np.zeros((H, W), np.uint8)
    expected[rectangle(0, 0, 20, 20)] = 255
    expected[rectangle(5, 5, 8, 8)] = 1
    expected[rectangle(30, 0, 35, 3)] = 1
    np.testing.assert_array_equal(mask, expected)

    # A small ignore region over a large target stays ignored; labels that contain "ignore" in
    # any case count as ignore, any other label as target.
    shapes = [
        shape("target", [[0, 0], [20, 0], [20, 20], [0, 20]]),
        shape("IGNORE_me", [[5, 5], [8, 5], [8, 8], [5, 8]]),
        shape("object", [[30, 0], [35, 0], [35, 3], [30, 3]]),
    ]
    expected = np.zeros((H, W), np.uint8)
    expected[rectangle(0, 0, 20, 20)] = 1
    expected[rectangle(5, 5, 8, 8)] = 255
    expected[rectangle(30, 0, 35, 3)] = 1
    np.testing.assert_array_equal(rasterize_shapes(shapes, H, W), expected)


def test_no_shapes_is_an_empty_mask(tmp_path: Path) -> None:
    write_reasonseg(tmp_path, "empty", anno())
    (sample,) = load_dataset(tmp_path)
    assert not sample.mask.any()


def test_explanatory_answers(tmp_path: Path) -> None:
    folder = tmp_path / "ReasonSeg" / "train"
    shutil.copytree(FIXTURE, folder)
    explanatory = tmp_path / "ReasonSeg" / "explanatory"
    explanatory.mkdir()
    items = [{"image": "b_cup.jpg", "query": "the cup", "outputs": "The cup is on the left."}]
    (explanatory / "train.json").write_text(json.dumps(items))
    answers = {s.name: s.answer for s in load_dataset(folder)}
    assert answers == {"a_shelf": None, "b_cup": "The cup is on the left."}

    (explanatory / "train.json").write_text(json.dumps([{"image": "b_cup.jpg"}]))
    with pytest.raises(DatasetError, match=r"explanatory/train\.json: item 0"):
        load_dataset(folder)


def test_simple_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), np.uint8)
    mask[rectangle(3, 4, 20, 25)] = 1
    mask[rectangle(10, 10, 12, 12)] = 255
    write_sample(tmp_path, "frame_002", image, mask, "pick up the red cup", "It is [SEG].")
    target = rectangle(0, 0, 5, 5)
    path = write_sample(tmp_path, "frame_001", image, target, "the mug", is_sentence=True)
    assert path == tmp_path / "frame_001.json"
    assert not (tmp_path / "frame_001_ignore.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "frame_001.json",
        "frame_001.png",
        "frame_001_mask.png",
        "frame_002.json",
        "frame_002.png",
        "frame_002_ignore.png",
        "frame_002_mask.png",
    ]

    assert detect_format(tmp_path) == "simple"
    first, second = load_dataset(tmp_path)
    assert first.name == "frame_001" and second.name == "frame_002"
    assert first.instructions == ["the mug"] and first.is_sentence is True
    assert first.answer is None
    np.testing.assert_array_equal(first.mask, target.astype(np.uint8))
    assert second.instructions == ["pick up the red cup"] and second.is_sentence is False
    assert second.answer == "It is [SEG]."
    np.testing.assert_array_equal(second.mask, mask)
    np.testing.assert_array_equal(second.image(), image)

    # Rewriting a sample without ignored pixels removes its stale ignore file.
    write_sample(tmp_path, "frame_002", image, mask == 1, "pick up the red cup")
    assert not (tmp_path / "frame_002_ignore.png").exists()
    np.testing.assert_array_equal(load_dataset(tmp_path)[1].mask, (mask == 1).astype(np.uint8))


def test_simple_hand_made_masks(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((H, W, 3), np.uint8))
    target = rectangle(0, 0, 9, 9).astype(np.uint8)  # a 0/1 mask
    ignore = rectangle(5, 5, 14, 14).astype(np.uint8) * 255
    cv2.imwrite(str(tmp_path / "a_mask.png"), target)
    cv2.imwrite(str(tmp_path / "a_ignore.png"), ignore)
    (tmp_path / "a.json").write_text(json.dumps({"instruction": "the box"}))
    (sample,) = load_dataset(tmp_path)
    expected = target.copy()
    expected[ignore > 0] = 255
    np.testing.assert_array_equal(sample.mask, expected)
    assert sample.image_path == tmp_path / "a.jpg"
    assert sample.is_sentence is False and sample.answer is None


def test_format_override(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "ds")
    with pytest.raises(DatasetError, match=r"a_shelf\.json: not a simple-format sample"):
        load_dataset(tmp_path / "ds", format="simple")
    with pytest.raises(ValueError, match="unknown dataset format"):
        load_dataset(tmp_path / "ds", format="coco")


def test_write_sample_refuses_bad_input(tmp_path: Path) -> None:
    image = np.zeros((H, W, 3), np.uint8)
    mask = np.zeros((H, W), bool)
    with pytest.raises(ValueError, match="0, 1 or 255"):
        write_sample(tmp_path, "a", image, np.full((H, W), 7, np.uint8), "x")
    with pytest.raises(ValueError, match="mask shape"):
        write_sample(tmp_path, "a", image, mask[:5], "x")
    with pytest.raises(ValueError, match="plain file name"):
        write_sample(tmp_path, "../a", image, mask, "x")
    with pytest.raises(ValueError, match="_mask"):
        write_sample(tmp_path, "a_mask", image, mask, "x")
    with pytest.raises(ValueError, match="instruction"):
        write_sample(tmp_path, "a", image, mask, " ")
    assert not any(tmp_path.iterdir())


def one_line(error: pytest.ExceptionInfo, path: Path) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a ReasonSeg annotation (a JSON list)"),
        (json.dumps({"text": ["x"], "shapes": []}), "missing is_sentence"),
        (json.dumps(anno(text=[])), "'text' is empty"),
        (json.dumps({**anno(), "text": "the cup"}), "'text' must be a list"),
        (json.dumps(anno(text=["ok", ""])), "'text'[1] must be a non-empty string"),
        (json.dumps({**anno(), "is_sentence": "yes"}), "'is_sentence' must be true or false"),
        (json.dumps({**anno(), "shapes": {}}), "'shapes' must be a list"),
        (json.dumps(anno({"label": "target"})), "shape 0 must be an object with label and"),
        (json.dumps(anno(shape("target", [[1, 2], [3]]))), "shape 0 (target) point 1 is [3]"),
        (json.dumps(anno(shape("target", [[1, True]]))), "point 0 is [1, True], not [x, y]"),
    ],
)
def test_reasonseg_errors(tmp_path: Path, content: str, reason: str) -> None:
    path = write_reasonseg(tmp_path, "bad", content)
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    assert reason in one_line(error, path)
    assert error.value.path == path


def test_polygon_outside_the_image(tmp_path: Path) -> None:
    square = [[0, 0], [W, 0], [W, H], [0, H]]
    outside = shape("target", [[10, 10], [45.5, 12], [10, 20]])
    path = write_reasonseg(tmp_path, "out", anno(shape("ignore", square), outside))
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    message = one_line(error, path)
    assert "shape 1 (target) point 1 [45.5, 12] is outside the 40x30 image" in message

    # The authors' behaviour on request: OpenCV clips the polygon.
    (sample,) = load_dataset(tmp_path, allow_outside=True)
    assert (sample.mask[10:21, 10:40] == 1).any() and sample.mask[0, 0] == 255

    path = write_reasonseg(tmp_path, "out", anno(shape("target", [[1, -0.5], [5, 5], [1, 5]])))
    with pytest.raises(DatasetError, match=r"out\.json: shape 0 \(target\) point 0 \[1, -0\.5\]"):
        load_dataset(tmp_path)


def test_missing_files(tmp_path: Path) -> None:
    path = write_reasonseg(tmp_path, "lonely", anno())
    (tmp_path / "lonely.jpg").unlink()
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    assert "its image lonely.jpg is missing" in one_line(error, path)

    path.unlink()
    cv2.imwrite(str(tmp_path / "orphan.jpg"), np.zeros((H, W, 3), np.uint8))
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    assert "no annotation orphan.json" in one_line(error, tmp_path / "orphan.jpg")

    (tmp_path / "orphan.jpg").unlink()
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    assert "no samples" in one_line(error, tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(tmp_path / "nowhere")

    path = write_reasonseg(tmp_path, "broken", anno())
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    assert "cannot read the image" in one_line(error, tmp_path / "broken.jpg")


def test_cp1252_json_is_read_like_the_authors(tmp_path: Path) -> None:
    path = write_reasonseg(tmp_path, "cafe", anno())
    path.write_bytes(
        json.dumps(anno(text=["the caf\u00e9 sign"]), ensure_ascii=False).encode("cp1252")
    )
    (sample,) = load_dataset(tmp_path)
    assert sample.instructions == ["the caf\u00e9 sign"]


def simple_folder(tmp_path: Path) -> Path:
    write_sample(tmp_path, "s", np.zeros((H, W, 3), np.uint8), np.ones((H, W), bool), "x")
    return tmp_path / "s.json"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"instruction": ""}, "'instruction' must be a non-empty string"),
        ({"instruction": "x", "answer": 3}, "'answer' must be a string or null"),
        ({"instruction": "x", "is_sentence": 1}, "'is_sentence' must be true or false"),
        ({"text": ["x"]}, "not a simple-format sample: no 'instruction' key"),
    ],
)
def test_simple_json_errors(tmp_path: Path, record: dict, reason: str) -> None:
    path = simple_folder(tmp_path)
    path.write_text(json.dumps(record))
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    assert reason in one_line(error, path)


def test_simple_file_errors(tmp_path: Path) -> None:
    path = simple_folder(tmp_path)
    (tmp_path / "s.png").unlink()
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    assert "its image s.png or .jpg is missing" in one_line(error, path)

    cv2.imwrite(str(tmp_path / "s.png"), np.zeros((H, W, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "s.jpg"), np.zeros((H, W, 3), np.uint8))
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    assert "more than one image: s.png and s.jpg" in one_line(error, path)
    (tmp_path / "s.jpg").unlink()

    mask_path = tmp_path / "s_mask.png"
    cv2.imwrite(str(mask_path), np.zeros((H, W - 1), np.uint8))
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    assert "the mask is 39x30, the image 40x30" in one_line(error, mask_path)

    cv2.imwrite(str(mask_path), np.zeros((H, W, 3), np.uint8))
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    assert "one channel" in one_line(error, mask_path)

    # Another sample's mask keeps the folder "simple"; this one's is missing.
    mask_path.rename(tmp_path / "other_mask.png")
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    assert "its mask s_mask.png is missing" in one_line(error, path)
