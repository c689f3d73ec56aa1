"""Face preprocessing: raw videos -> aligned face crops, per-video face tracks, dataset-ready folders.

Stages (one module each): :mod:`~fertrain.preprocess.decode` (sequential decoding, once),
:mod:`~fertrain.preprocess.detect` (detectors: dlib HOG by default, dlib CNN, OpenCV Haar, MTCNN; dlib's 5-point
landmarks), :mod:`~fertrain.preprocess.track` (temporal rules: linking, rejection, smoothing, gap filling),
:mod:`~fertrain.preprocess.align` (5-point least-squares similarity alignment or square crops),
:mod:`~fertrain.preprocess.pipeline` (one video: ``extract_faces``), :mod:`~fertrain.preprocess.write` (layouts,
per-video JSON, summary table, resume) and :mod:`~fertrain.preprocess.cli` (``python -m fertrain.preprocess``).
"""

from fertrain.preprocess.pipeline import FaceOptions, FacePipeline, FaceVideo, extract_faces
from fertrain.preprocess.track import FaceTrack, TrackOptions

__all__ = ["FaceOptions", "FacePipeline", "FaceTrack", "FaceVideo", "TrackOptions", "extract_faces"]
