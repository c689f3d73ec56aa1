"""BU-3DFE (Binghamton University 3D Facial Expression), its 2D texture images as 5-frame expression sequences.

Source: L. Yin, X. Wei, Y. Sun, J. Wang, M. J. Rosato, "A 3D Facial Expression Database For Facial Behavior
Research", IEEE FG 2006. 100 subjects (56 female ``F0001..F0056``, 44 male ``M0001..M0044``), each posing the six
basic expressions at four intensity levels plus one neutral face. The data are licensed (Binghamton University);
fertrain ships none of it.

Expected layout (the release's per-subject folders; only the frontal 2D textures ``*_F2D.bmp`` are read)::

    <root>/
      F0001/F0001_NE00WH_F2D.bmp            # neutral (level 00)
      F0001/F0001_AN01WH_F2D.bmp ... F0001_AN04WH_F2D.bmp
      ...                                   # DI, FE, HA, SA, SU likewise; other files (3D *.wrl, ...) ignored
      M0044/...

File names: ``<subject>_<EX><LL><RR>_F2D.bmp`` with expression code ``EX`` in AN (anger), DI (disgust), FE (fear),
HA (happiness), SA (sadness), SU (surprise), NE (neutral), intensity level ``LL`` 01..04 (00 for NE) and a
two-letter ethnicity code ``RR`` (WH, BL, AE, AM, LA, IN; not used here).

Sequences (static images, ordered as a clip): for each subject and expression, ``neutral -> level 1 -> 2 -> 3 ->
4`` (5 frames, ``ClipRecord.frame_files``), labelled with the expression. Frame samplers asking for more than 5
frames repeat frames by their documented padding rules.

Label map: 6 classes (neutral only as the first frame), canonical order of :mod:`fertrain.data.datasets.common`:
Angry, Disgust, Fear, Happy, Sad, Surprise.

Protocol: subject-independent 10-fold cross-validation (``fold``, ``num_folds``, ``folds`` as for MMI, see
:class:`fertrain.data.datasets.common.SubjectFoldDataset`); ``"val"`` = ``"test"``; the datamodule writes the folds
used to ``<run_dir>/folds.csv``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from fertrain.data.datasets.common import CANONICAL_6, MAX_LISTED, SubjectFoldDataset, natural_key
from fertrain.data.records import ClipRecord, DatasetError

log = logging.getLogger(__name__)

BU3DFE_CLASS_NAMES: tuple[str, ...] = CANONICAL_6
EXPRESSION_CODES = ("AN", "DI", "FE", "HA", "SA", "SU")  # in canonical class order
NEUTRAL_CODE = "NE"
LEVELS = (1, 2, 3, 4)

LAYOUT = """\
<root>/<subject>/<subject>_<EX><LL><RR>_F2D.bmp
  e.g. F0001/F0001_NE00WH_F2D.bmp, F0001/F0001_AN01WH_F2D.bmp ... F0001_AN04WH_F2D.bmp
  EX: AN DI FE HA SA SU (levels 01..04), NE (level 00)"""


class BU3DFE(SubjectFoldDataset):
    """BU-3DFE neutral -> level 1..4 sequences as :class:`ClipRecord` lists, one fold of subject-independent k-fold.

    ``path`` is the subject folder, ``frame_files`` the 5 image paths, ``video_id`` ``<subject>_<EX>``
    (e.g. ``F0001_AN``), ``subject`` the subject id, ``origin`` the sequence's file pattern. Parsing happens on
    the first :meth:`records` call; nothing is decoded.

    Args:
        root: BU-3DFE root (layout in the module docstring).
        fold: held-out fold, ``1..num_folds``.
        num_folds: folds of the cross-validation (10).
        folds: optional ``subject,fold`` csv; None builds folds by the round-robin rule.
        image_ext: extension of the 2D images including the dot (default ``.bmp``; e.g. ``.png`` after conversion).

    Raises:
        ValueError: bad ``fold``/``num_folds``/``image_ext``.
        DatasetError (from :meth:`records`): root missing; no ``*_F2D`` image at all; a malformed ``*_F2D`` file name,
            an expression code outside the classes, a level outside 01..04 (00 for NE), a file in another subject's
            folder (names the file); a subject missing from the fold list; an empty fold. A missing frame of a
            sequence (e.g. the neutral image) is left in ``frame_files`` and reported by the datamodule.
    """

    class_names: tuple[str, ...] = BU3DFE_CLASS_NAMES
    name = "BU-3DFE"

    def __init__(self, root: str | Path, fold: int = 1, num_folds: int = 10, folds: str | Path | None = None,
                 image_ext: str = ".bmp") -> None:
        super().__init__(fold=fold, num_folds=num_folds, folds=folds)
        if not image_ext.startswith("."):
            raise ValueError(f"BU-3DFE image_ext must start with a dot (e.g. '.bmp'), got {image_ext!r}")
        self.root = Path(root)
        self.image_ext = image_ext
        self._pattern = re.compile(r"^(?P<subject>[^_]+)_(?P<code>[A-Za-z]{2})(?P<level>\d{2})(?P<race>[A-Za-z]{2})"
                                   r"_F2D" + re.escape(image_ext) + "$", re.IGNORECASE)

    def _parse(self) -> list[ClipRecord]:
        if not self.root.is_dir():
            raise DatasetError(f"BU-3DFE root {self.root} does not exist or is not a folder. Expected:\n{LAYOUT}")
        suffix = f"_f2d{self.image_ext.lower()}"
        records: list[ClipRecord] = []
        absent: list[str] = []
        for subject_dir in sorted((d for d in self.root.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name)):
            files = [p for p in subject_dir.iterdir() if p.name.lower().endswith(suffix) and p.is_file()]
            if not files:
                continue
            found: dict[tuple[str, int], Path] = {}
            races: set[str] = set()
            for file in files:
                code, level, race = self._parse_name(file, subject_dir.name)
                found[(code, level)] = file
                races.add(race)
            race = sorted(races)[0]  # used only to name the expected path of a missing frame

            def frame(code: str, level: int) -> Path:
                return found.get((code, level),
                                 subject_dir / f"{subject_dir.name}_{code}{level:02d}{race}_F2D{self.image_ext}")

            for label, code in enumerate(EXPRESSION_CODES):
                if not any((code, lv) in found for lv in LEVELS):
                    absent.append(f"{subject_dir.name}_{code}")
                    continue
                frames = (frame(NEUTRAL_CODE, 0),) + tuple(frame(code, lv) for lv in LEVELS)
                records.append(ClipRecord(
                    path=subject_dir, label=label, video_id=f"{subject_dir.name}_{code}", num_frames=len(frames),
                    subject=subject_dir.name, frame_files=frames,
                    origin=f"{subject_dir.name}/{subject_dir.name}_{{NE00,{code}01..04}}{race}_F2D{self.image_ext}"))
        if not records:
            raise DatasetError(f"BU-3DFE root {self.root}: no *_F2D{self.image_ext} image in any subject folder "
                               f"(empty dataset). Expected:\n{LAYOUT}")
        if absent:
            log.warning("BU-3DFE: %d subject/expression pairs have no image and are not in the dataset, e.g. %s",
                        len(absent), absent[:MAX_LISTED])
        return records

    def _parse_name(self, file: Path, subject: str) -> tuple[str, int, str]:
        """``(code, level, race)`` of a ``*_F2D`` file name, checked against the naming rule."""
        m = self._pattern.match(file.name)
        if m is None:
            raise DatasetError(f"BU-3DFE file {file}: name does not follow <subject>_<EX><LL><RR>_F2D{self.image_ext} "
                               f"(e.g. {subject}_AN01WH_F2D{self.image_ext})")
        if m["subject"] != subject:
            raise DatasetError(f"BU-3DFE file {file}: subject {m['subject']!r} in the name differs from its folder "
                               f"{subject!r}; expected files of a subject in the subject's folder")
        code, level = m["code"].upper(), int(m["level"])
        if code == NEUTRAL_CODE:
            if level != 0:
                raise DatasetError(f"BU-3DFE file {file}: neutral (NE) with level {level:02d}; expected NE00")
        elif code not in EXPRESSION_CODES:
            raise DatasetError(f"BU-3DFE file {file}: expression code {code!r} is outside the class set; expected one "
                               f"of {', '.join(EXPRESSION_CODES)} or NE")
        elif level not in LEVELS:
            raise DatasetError(f"BU-3DFE file {file}: intensity level {level:02d} of {code}; expected 01..04")
        return code, level, m["race"].upper()


def make_miniature_bu3dfe(root: str | Path, subjects: int = 10, size: int = 40, seed: int = 0) -> Path:
    """Write a tiny BU-3DFE tree (release layout) of synthetic 2D images, for tests and trying the pipeline.

    Subjects alternate ``F0001, M0001, F0002, ...``; each gets ``<s>_NE00WH_F2D.bmp`` and, per expression,
    ``<s>_<EX>0<l>WH_F2D.bmp`` for levels 1..4: ``size`` x ``size`` RGB BMPs whose class pattern
    (:func:`fertrain.data.datasets.common.synthetic_frames`) fades in from grey with the level (ours).

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: an argument is out of range.
    """
    from PIL import Image

    from fertrain.data.datasets.common import synthetic_frames

    if subjects < 1 or size < 8:
        raise ValueError(f"make_miniature_bu3dfe needs subjects >= 1 and size >= 8; got {subjects}, {size}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    for s in range(subjects):
        subject = f"{'FM'[s % 2]}{s // 2 + 1:04d}"
        folder = root / subject
        folder.mkdir(parents=True, exist_ok=True)
        neutral = synthetic_frames("Neutral", 1, size, rng)[0]
        Image.fromarray(neutral).save(folder / f"{subject}_NE00WH_F2D.bmp")
        for code, name in zip(EXPRESSION_CODES, BU3DFE_CLASS_NAMES):
            frames = synthetic_frames(name, len(LEVELS), size, rng).astype(np.float32)
            for t, level in enumerate(LEVELS):
                w = level / len(LEVELS)  # intensity: weight of the expression pattern over the neutral face
                img = np.clip(w * frames[t] + (1 - w) * neutral + 0.5, 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{subject}_{code}{level:02d}WH_F2D.bmp")
    return root
