"""Stage 4 of face extraction: 5-point least-squares similarity alignment, or a square crop around the box.

**Similarity alignment** (``align_face``): the similarity transform (rotation, uniform scale, translation; no
shear, no reflection) that maps the frame's 5 landmarks onto a fixed template with the least squared error
(``similarity_transform``; the linear least-squares form of Umeyama, IEEE TPAMI 13(4), 1991), then one bilinear
warp. Least squares on all 5 points, not ``cv2.estimateAffinePartial2D``'s default robust fit: on 5 points that
one is off by up to 8 degrees (issue 17).

Templates (``TEMPLATES``) are points of dlib's mean face shape, the frame dlib's own ``get_face_chip_details``
aligns to (davisking/dlib, ``dlib/image_transforms/interpolation.h``): coordinates in a unit square that spans
the 68-point iBUG face (x from jaw to jaw, y from brow top to chin):

- ``dlib5`` (dlib's 5-point predictor): the 5 points ``get_face_chip_details`` uses for 5-point shapes: outer and
  inner corner of the eye on the image's right, the same on the image's left, the base of the nose.
- ``mtcnn5`` (MTCNN): the same mean face's eye centres (mean of its 6 points per eye, iBUG 36-41 and 42-47), nose
  tip (iBUG 30) and mouth corners (iBUG 48, 54) -- ours, so MTCNN crops share the dlib crops' geometry.

Output geometry as dlib's ``padding``: a template point ``p`` lands at ``(margin + p) / (1 + 2 margin) * size``
pixels, i.e. ``margin`` is the fraction of the face square added on each side. Pixels outside the frame are
black. When the warp shrinks the face by more than 4/3, the face's region of the frame is first reduced with
``cv2.INTER_AREA`` so the bilinear warp does not alias (ours).

**Square crop** (``square_crop``, ``--align none``; fertrain 0.1's rule): a square of side
``max(w, h) * (1 + margin)`` centred on the smoothed box, black outside the frame, resized to ``size``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["TEMPLATES", "align_face", "eye_centres", "eye_line_angle", "similarity_transform", "square_crop",
           "template_points"]

# dlib mean face points (x, y) in the unit face square, see the module docstring.
TEMPLATES: dict[str, np.ndarray] = {
    "dlib5": np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                       [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                       [0.4901123135679, 0.6277975316475]]),
    "mtcnn5": np.array([[0.2254585, 0.2159903], [0.7547613, 0.2159903], [0.490127, 0.515625],
                        [0.254149, 0.780233], [0.726104, 0.780233]]),
}


def template_points(scheme: str, size: int, margin: float) -> np.ndarray:
    """Where the template of ``scheme`` lands in a ``size x size`` output: float ``(5, 2)`` pixels.

    Raises:
        ValueError: unknown scheme, ``size < 1`` or ``margin < 0``.
    """
    if scheme not in TEMPLATES:
        raise ValueError(f"unknown landmark scheme {scheme!r}; expected one of {sorted(TEMPLATES)}")
    if size < 1 or margin < 0:
        raise ValueError(f"alignment needs size >= 1 pixel and margin >= 0, got size={size}, margin={margin}")
    return (margin + TEMPLATES[scheme]) / (1.0 + 2.0 * margin) * size


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform from ``src`` to ``dst`` points.

    Solves ``min sum_i |[[a, -b], [b, a]] src_i + t - dst_i|^2`` over ``a, b, t`` (linear least squares).

    Args:
        src, dst: float ``(P, 2)``, P >= 2 points ``x, y``.

    Returns:
        float ``(2, 3)`` matrix ``M`` with ``dst ~ M @ [x, y, 1]``, as ``cv2.warpAffine`` takes it.

    Raises:
        ValueError: shapes differ, fewer than 2 points, or a non-finite point.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"similarity_transform needs two (P, 2) point arrays with P >= 2, got {src.shape}, "
                         f"{dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("similarity_transform: non-finite landmark")
    p = len(src)
    a = np.zeros((2 * p, 4))
    a[0::2] = np.stack([src[:, 0], -src[:, 1], np.ones(p), np.zeros(p)], axis=1)
    a[1::2] = np.stack([src[:, 1], src[:, 0], np.zeros(p), np.ones(p)], axis=1)
    (ca, cb, tx, ty), *_ = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)
    return np.array([[ca, -cb, tx], [cb, ca, ty]])


def align_face(frame: np.ndarray, landmarks: np.ndarray, scheme: str, size: int = 224,
               margin: float = 0.25) -> np.ndarray:
    """The face warped onto the template of ``scheme``.

    Args:
        frame: uint8 ``(H, W, C)`` (any channel order; kept).
        landmarks: float ``(5, 2)`` ``x, y`` pixels of ``frame`` in the order of ``scheme``.
        scheme: ``"dlib5"`` or ``"mtcnn5"``.
        size: output side in pixels. margin: face-square fraction added on each side (module docstring).

    Returns:
        uint8 ``(size, size, C)``.

    Raises:
        ValueError: bad scheme, size, margin or landmarks.
    """
    dst = template_points(scheme, size, margin)
    lm = np.asarray(landmarks, np.float64)
    m = similarity_transform(lm, dst)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.75:  # reduce the face's region first: a bilinear warp that shrinks a lot aliases
        inv = cv2.invertAffineTransform(m)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inv.T
        h, w = frame.shape[:2]
        x0, y0 = (max(0, int(np.floor(v)) - 2) for v in corners.min(axis=0))
        x1, y1 = min(w, int(np.ceil(corners[:, 0].max())) + 2), min(h, int(np.ceil(corners[:, 1].max())) + 2)
        if x1 > x0 and y1 > y0:
            region = frame[y0:y1, x0:x1]
            nw, nh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
            frame = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
            lm = (lm - [x0, y0]) * np.array([nw / (x1 - x0), nh / (y1 - y0)])
            m = similarity_transform(lm, dst)
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def square_crop(frame: np.ndarray, box: np.ndarray, size: int = 224, margin: float = 0.25) -> np.ndarray:
    """Square crop of side ``max(w, h) * (1 + margin)`` centred on ``box``, black outside, resized to ``size``.

    Args:
        frame: uint8 ``(H, W, C)``. box: ``x0, y0, x1, y1`` pixels. size: output side, pixels. margin: > -1.

    Returns:
        uint8 ``(size, size, C)`` (``cv2.INTER_AREA`` when shrinking, else bilinear).
    """
    if size < 1 or margin <= -1:
        raise ValueError(f"square_crop needs size >= 1 pixel and margin > -1, got size={size}, margin={margin}")
    x0, y0, x1, y1 = (float(v) for v in box)
    s = max(1, int(round(max(x1 - x0, y1 - y0) * (1.0 + margin))))
    x, y = int(round((x0 + x1) / 2 - s / 2)), int(round((y0 + y1) / 2 - s / 2))
    h, w = frame.shape[:2]
    out = np.zeros((s, s) + frame.shape[2:], dtype=frame.dtype)
    sx0, sy0, sx1, sy1 = max(x, 0), max(y, 0), min(x + s, w), min(y + s, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y:sy1 - y, sx0 - x:sx1 - x] = frame[sy0:sy1, sx0:sx1]
    return cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)


def eye_centres(landmarks: np.ndarray, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """``(eye on the image's left, eye on the image's right)`` centres, float ``(2,)`` each."""
    lm = np.asarray(landmarks, np.float64)
    if scheme == "dlib5":
        return lm[2:4].mean(axis=0), lm[0:2].mean(axis=0)
    if scheme == "mtcnn5":
        return lm[0], lm[1]
    raise ValueError(f"unknown landmark scheme {scheme!r}; expected one of {sorted(TEMPLATES)}")


def eye_line_angle(landmarks: np.ndarray, scheme: str) -> float:
    """Angle in degrees of the line from the left to the right eye centre (0: level; positive: clockwise in the
    image, i.e. the right eye lower)."""
    left, right = eye_centres(landmarks, scheme)
    return float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
