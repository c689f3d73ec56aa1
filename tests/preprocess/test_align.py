"""Least-squares similarity alignment: exact on exact points, least squares on noisy ones, the template geometry,
the warp itself on a synthetic image, square crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fertrain.preprocess.align import (TEMPLATES, align_face, eye_line_angle, similarity_transform, square_crop,
                                       template_points)


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def test_similarity_transform_recovers_an_exact_transform_and_is_least_squares():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    m = _similarity(25.0, 1.7, 30.0, -12.0)
    assert np.allclose(similarity_transform(src, _apply(m, src)), m, atol=1e-9)
    noisy = _apply(m, src) + rng.normal(0, 2.0, (5, 2))
    fit = similarity_transform(src, noisy)
    err = lambda mm: ((_apply(mm, src) - noisy) ** 2).sum()  # noqa: E731
    assert err(fit) <= err(m)  # no similarity fits better than the least-squares one
    for d in (np.array([[1, 0, 0.5], [0, 1, 0]]), _similarity(-3, 1.01, 0, 0)):  # nearby transforms fit worse
        assert err(fit) <= err(fit + (d - np.eye(2, 3)) * 0.01) + 1e-9
    with pytest.raises(ValueError, match="P >= 2"):
        similarity_transform(src[:1], src[:1])
    with pytest.raises(ValueError, match="non-finite"):
        similarity_transform(np.full((5, 2), np.nan), src)


def test_template_geometry_margin_and_eyes():
    pts = template_points("dlib5", 224, 0.25)
    assert np.allclose(pts, (0.25 + TEMPLATES["dlib5"]) / 1.5 * 224)
    assert abs(eye_line_angle(TEMPLATES["dlib5"], "dlib5")) < 0.5
    assert abs(eye_line_angle(TEMPLATES["mtcnn5"], "mtcnn5")) < 1e-6
    # both templates put the eyes at the same place (one geometry for every detector)
    for a, b in zip(*(np.array([np.mean(TEMPLATES["dlib5"][2:4], 0), np.mean(TEMPLATES["dlib5"][:2], 0)]),
                      TEMPLATES["mtcnn5"][:2])):
        assert np.allclose(a, b, atol=0.02)
    with pytest.raises(ValueError, match="unknown landmark scheme"):
        template_points("dlib68", 224, 0.2)


@pytest.mark.parametrize("angle, scale", [(25.0, 1.0), (-40.0, 3.0), (10.0, 0.6)])
def test_align_face_puts_the_landmarks_on_the_template(angle, scale):
    """Five dots drawn where a rotated, scaled face's landmarks are: after alignment they sit on the template."""
    size, margin = 112, 0.25
    target = template_points("dlib5", size, margin)
    m = _similarity(angle, scale, 320.0, 200.0)
    lm = _apply(m, target - size / 2)
    frame = np.zeros((480, 640, 3), np.uint8)
    for x, y in lm:
        cv2.circle(frame, (round(x), round(y)), max(2, round(2 * scale)), (255, 255, 255), -1)
    out = align_face(frame, lm, "dlib5", size, margin)
    assert out.shape == (size, size, 3)
    n, labels, stats, centres = cv2.connectedComponentsWithStats((out[..., 0] > 60).astype(np.uint8))
    found = centres[1:]
    assert n - 1 == 5
    for p in target:
        assert np.min(np.linalg.norm(found - p, axis=1)) < 1.5


def test_square_crop_pads_with_black_and_resizes():
    frame = np.full((120, 160, 3), 90, np.uint8)
    frame[30:70, 40:80] = (0, 0, 255)
    crop = square_crop(frame, np.array([40, 30, 80, 70]), size=32, margin=0.0)
    assert crop.shape == (32, 32, 3) and (crop[8:24, 8:24] == (0, 0, 255)).all()
    edge = square_crop(frame, np.array([-20, -20, 20, 20]), size=40, margin=0.0)
    assert (edge[:20, :20] == 0).all() and (edge[25:, 25:] == 90).all()
    with pytest.raises(ValueError, match="margin > -1"):
        square_crop(frame, np.array([0, 0, 10, 10]), margin=-1)
