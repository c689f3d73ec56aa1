"""Training-free feature-difference spotter: a synthetic face with an inserted expression, and the real videos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fertrain.spotting.baseline import BaselineConfig, lbp_histograms, read_spotting_labels, spot_crops
from fertrain.spotting.intervals import Interval, iou

ONSET, OFFSET = 40, 79  # inserted expression, 40 frames (inclusive)


def synthetic_face_video(n: int = 120, size: int = 112, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 3): a drawn, textured face with sensor noise and 1-px jitter; frames ONSET..OFFSET
    smile."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.normal(0, 40, (size, size)), (0, 0), 1.5)  # fixed skin-like texture
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    for t in range(n):
        img = np.full((size, size), 60, np.uint8)
        cv2.ellipse(img, (56, 56), (38, 48), 0, 0, 360, 170, -1)  # face
        for x in (40, 72):
            cv2.circle(img, (x, 44), 5, 40, -1)  # eyes
        if ONSET <= t <= OFFSET:  # smile: wide open mouth, raised cheeks
            cv2.ellipse(img, (56, 78), (20, 10), 0, 0, 180, 30, -1)
            cv2.ellipse(img, (36, 66), (8, 4), 0, 0, 360, 200, -1)
            cv2.ellipse(img, (76, 66), (8, 4), 0, 0, 360, 200, -1)
        else:  # neutral: a thin straight mouth
            cv2.line(img, (44, 80), (68, 80), 40, 2)
        img = img + texture
        dx, dy = rng.integers(-1, 2, size=2)
        img = np.roll(img, (int(dy), int(dx)), axis=(0, 1))
        img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
        frames[t] = np.repeat(img[..., None], 3, axis=-1)
    return frames


def test_lbp_histograms_shape_and_normalisation() -> None:
    flat = np.full((2, 20, 20), 100, np.uint8)
    h = lbp_histograms(flat, grid=3)
    assert h.shape == (2, 9, 59)
    assert np.allclose(h.sum(-1), 1.0)
    # a flat image: every neighbour >= centre -> code 255, a uniform pattern -> one bin holds everything
    assert np.allclose(h.max(-1), 1.0)


def test_recovers_inserted_expression_and_respects_no_face_span() -> None:
    video = synthetic_face_video()
    has_face = np.ones(len(video), dtype=bool)
    has_face[110:] = False  # face lost at the end: excluded, counted
    cfg = BaselineConfig(k_frames=20)  # half the inserted length, as k_from_annotations would give
    res = spot_crops(video, has_face, fps=30.0, cfg=cfg)
    truth = Interval(ONSET, OFFSET, "macro")
    assert len(res.intervals) == 1, res.intervals
    (found,) = res.intervals
    assert found.kind == "macro" and iou(found, truth) >= 0.5, found
    assert abs(found.onset - ONSET) <= 5 and abs(found.offset - OFFSET) <= 5
    assert np.isnan(res.scores[110:]).all() and not np.isnan(res.scores[:110]).any()
    assert res.stats["no_face_frames"] == 10 and res.stats["face_spans"] == 1 and res.k == 20
    # the expression stands above the noise floor: every score of an expression-free video (same noise, jitter)
    # is below the median score inside the inserted expression
    still = spot_crops(video[:ONSET], None, 30.0, BaselineConfig(k_frames=20))
    assert np.nanmax(still.scores) < np.median(res.scores[ONSET + 5:OFFSET - 5])


def test_bad_config_and_labels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be"):
        BaselineConfig(mode="wavelet")
    bad = tmp_path / "cfg.yaml"
    bad.write_text("k_s: 1.0\nthreshhold: 0.2\n")
    with pytest.raises(ValueError, match=r"unknown keys \['threshhold'\]"):
        BaselineConfig.from_yaml(bad)
    from fertrain.data.records import DatasetError

    labels = tmp_path / "spot.csv"
    labels.write_text("video,onset,apex,offset,type\na.mp4,10,30,20,macro\n")
    with pytest.raises(DatasetError, match="line 2: apex 30 outside"):
        read_spotting_labels(labels)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        spot_crops(np.zeros((4, 8, 8, 2), np.uint8), None, 30.0)


@pytest.mark.slow
def test_real_videos_find_the_smile(shared_dir: Path, tmp_path: Path) -> None:
    """The three labelled reference videos: each smile (macro, onsets 18, 18, 113) is found."""
    from fertrain.preprocess import FacePipeline
    from fertrain.spotting.baseline import run

    try:
        FacePipeline()
    except (ImportError, FileNotFoundError) as e:
        pytest.skip(f"no face detector for face extraction: {e}")
    real = shared_dir / "data" / "real"
    names = ["single_face.mp4", "face_noface.mov", "noface_face.mov"]
    summary = run([real / n for n in names], real / "spotting.csv", tmp_path, BaselineConfig())
    for name in names:
        assert summary["per_video"][name]["macro/tp"] == 1.0, (name, summary["stats"][name])
    pooled = summary["pooled"]
    assert (pooled["macro/tp"], pooled["macro/fn"]) == (3.0, 0.0)
    assert json.loads((tmp_path / "summary.json").read_text())["pooled"]["macro/tp"] == 3.0
    assert (tmp_path / "result_log.csv").read_text().count(",TP") == 3


def test_kind_without_ground_truth_is_na_and_cli_contract(tmp_path: Path, capsys) -> None:
    """No micro ground truth: micro F1 is "n/a" (null in summary.json), not 0.000; the packaged config is found by
    name; bad input exits 2 with one line."""
    from fertrain.config import config_dir
    from fertrain.spotting import baseline
    from fertrain.spotting.baseline import find_config, main

    m = {"macro/tp": 1.0, "macro/fp": 0.0, "macro/fn": 0.0, "macro/f1": 1.0, "micro/tp": 0.0, "micro/fp": 2.0,
         "micro/fn": 0.0, "micro/f1": 0.0, "overall/tp": 1.0, "overall/fp": 2.0, "overall/fn": 0.0, "overall/f1": 0.5}
    line = baseline._fmt("v.mp4", m)
    assert "micro TP/FP/FN 0/2/0 F1 n/a" in line and "macro TP/FP/FN 1/0/0 F1 1.000" in line
    assert baseline._undefined_to_null({**m, "micro/recall": 0.0})["micro/f1"] is None
    assert find_config(None) == config_dir() / "spotting_baseline.yaml"
    assert find_config("spotting_baseline") == config_dir() / "spotting_baseline.yaml"
    labels = tmp_path / "labels.csv"
    labels.write_text("video,onset,apex,offset,type\na.mp4,1,2,3,macro\n")
    with pytest.raises(SystemExit) as e:
        main(["--videos", str(tmp_path / "missing.mp4"), "--labels", str(labels), "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "missing.mp4 is neither a video file nor a folder" in err
    with pytest.raises(SystemExit) as e:
        main(["--videos", str(tmp_path), "--labels", str(labels), "--out", str(tmp_path / "o"), "--config", "nope"])
    assert e.value.code == 2 and "--config nope: no such file" in capsys.readouterr().err
