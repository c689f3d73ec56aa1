"""Preprocessing of raw videos into training inputs: face tracks and aligned face-crop frame folders.

Names are loaded lazily from ``fertrain.preprocess.faces`` so that ``python -m fertrain.preprocess.faces`` runs
without importing the module twice.
"""

from __future__ import annotations

__all__ = ["FaceTrack", "TrackOptions", "crop_faces", "extract_folder", "extract_video", "track_faces"]


def __getattr__(name: str):
    if name in __all__:
        from fertrain.preprocess import faces

        return getattr(faces, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
