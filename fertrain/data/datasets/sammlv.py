"""SAMM Long Videos (SAMM-LV): macro- and micro-expression spotting, leave-one-subject-out.

Source: C. H. Yap, C. Kendrick, M. H. Yap, "SAMM Long Videos: A Spontaneous Facial Micro- and Macro-Expressions
Dataset", FG 2020; A. K. Davison et al., "SAMM: A Spontaneous Micro-Facial Movement Dataset", IEEE TAC 2018;
MEGC2020/2021 spotting protocol. Licensed data: request access from the authors; fertrain ships none of it.

Expected layout (the release)::

    <root>/
      SAMM_LongVideos_V<k>_Release.xlsx       # the highest version found is used unless `workbook` is given
        sheet 'FACS_Movement_Only' (or the first sheet with a header row): a few legend rows, then the header
          Subject | Filename | Inducement Code | Onset | Apex | Offset | Duration | Type | Action Units | Notes
          Filename = <video>_<index> ('006_1_2' belongs to video '006_1'); Type 'Macro' or 'Micro - 1/2'
      SAMM_longvideos/
        006_1/006_1_0001.jpg 006_1_0002.jpg ...  # one folder per video: <video>_<frame number>.jpg

Counts of the release: 343 macro + 159 micro intervals in 147 videos of 30 subjects, 200 fps (the public
evaluators' ground-truth files agree: MEGC2020's ``dataset_new/data/SAMM_MEGC_Sets/all_Info.txt`` and AUW-GCN's
``info_csv/samm_new_25.csv`` hold 343 + 159 rows; SoftNet drops the macro rows with onset 0 and reports 333 macro
ground truths, ``training.py``). Columns are found by their header names (case-insensitive), so legend rows and
column order do not matter.

Frames: annotation frame ``n`` is the file ``<video>_<n>.jpg``; the 0-based index is ``n - first`` with
``first`` the number of the folder's first frame (1 in the release): 1-based numbers become 0-based.

Policies (config values; defaults documented) for the intervals the reader gives (training, and the ``fertrain``
evaluation protocol). Every row is also kept raw on its video (``SpottingVideo.annotations``), so that an evaluation
protocol applies its own evaluator's policy (:class:`fertrain.spotting.protocols.GroundTruthPolicy`). What the
evaluators do (read in their code): MEGC2020 (HeyingGithub/Baseline-project-for-MEGC2020_spotting,
``dataset_new/SAMM_MEGC.py``, ``SAMM_MEGC.generate_dataset``) rounds fractional numbers (``int(x + 0.5)``) and keeps
an onset 0 as the interval ``[0, offset]``; SoftNet (genbing99/SoftNet-SpotME, ``load_label.py``, ``load_gt``)
floors them (``int(x - 1)``) and drops the macro rows with onset 0; AUW-GCN's ground-truth file keeps onset 0 and
apex -1 rows.

- ``fractional``: a non-integer frame number: ``"round"`` (default, to nearest, as MEGC2020), ``"floor"`` (as
  SoftNet) or ``"error"``.
- ``onset_zero``: onset 0 (not annotated): ``"apex"`` (default, ours: onset := apex; no public evaluator read here
  does this), ``"drop"`` (row left out, counted and logged; SoftNet drops the macro ones) or ``"error"``.
- apex ``-1`` (not annotated): accepted (the apex is not part of an interval); with onset 0 and
  ``onset_zero="apex"`` it is an error.
- ``offset_beyond``: an offset past the last frame (e.g. ``020_6_5`` in the release): ``"clamp"`` (default,
  counted and logged) or ``"error"``.
- ``include_unannotated``: also list frame folders without intervals (default True).

Subjects are the 3-digit codes (``"006"``), videos the folder names (``"006_1"``).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from fertrain.data.datasets.casme2 import _rows, write_frames
from fertrain.data.datasets.spotting_common import AnnotatedLongVideos, Row, write_workbook
from fertrain.data.records import DatasetError
from fertrain.data.spotting_data import (FRACTIONAL_POLICIES, SPOTTING_CLASS_NAMES, SpottingVideo, natural_key,
                                         open_workbook, parse_frame)
from fertrain.spotting.intervals import AnnotationRow

log = logging.getLogger(__name__)

WORKBOOK_GLOB = "SAMM_LongVideos_V*_Release.xlsx"
SHEET = "FACS_Movement_Only"
FPS = 200.0
HEADER = ("Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset", "Duration", "Type", "Action Units",
          "Notes")
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "type")
_HEADER_SEARCH_ROWS = 50

LAYOUT = """\
<root>/
  SAMM_LongVideos_V<k>_Release.xlsx   (legend rows, then header Subject, Filename, Inducement Code, Onset, Apex,
                                       Offset, Duration, Type, Action Units, Notes)
  SAMM_longvideos/<video>/<video>_<frame number>.jpg   (e.g. 006_1/006_1_0001.jpg)"""


def _kind(value) -> str | None:
    t = str(value or "").strip().lower()
    return "macro" if t.startswith("macro") else "micro" if t.startswith("micro") else None


class SAMMLongVideos(AnnotatedLongVideos):
    """SAMM-LV long videos with their macro/micro intervals (module docstring).

    :meth:`videos` lists them in natural order of their names.

    Args:
        root: dataset root.
        workbook: workbook file name or path (None: the highest ``SAMM_LongVideos_V*_Release.xlsx`` in ``root``).
        sheet: sheet name (None: ``FACS_Movement_Only`` if present, else the first sheet with a header row).
        frames_dir: folder of the per-video frame folders.
        fractional, onset_zero, offset_beyond, include_unannotated: policies (module docstring).
        fps: frame rate (200).

    Attributes:
        stats: counts of what the parser did (rows, policies applied, videos).

    Raises:
        DatasetError: missing workbook/header/frame folder; a malformed row (names workbook, sheet and row).
    """

    class_names: tuple[str, ...] = SPOTTING_CLASS_NAMES
    dataset_name = "SAMM-LV"

    def __init__(self, root: str | Path, workbook: str | None = None, sheet: str | None = None,
                 frames_dir: str = "SAMM_longvideos", fractional: str = "round", onset_zero: str = "apex",
                 offset_beyond: str = "clamp", include_unannotated: bool = True, fps: float = FPS) -> None:
        if fractional not in FRACTIONAL_POLICIES:
            raise ValueError(f"fractional must be one of {FRACTIONAL_POLICIES}, got {fractional!r}")
        if onset_zero not in ("apex", "drop", "error"):
            raise ValueError(f"onset_zero must be 'apex', 'drop' or 'error', got {onset_zero!r}")
        super().__init__(root, offset_beyond, include_unannotated, fps, LAYOUT)
        if workbook is None:
            found = sorted(self.root.glob(WORKBOOK_GLOB), key=lambda p: natural_key(p.name))
            if not found:
                raise DatasetError(f"SAMM-LV: no {WORKBOOK_GLOB} in {self.root}; expected layout:\n{LAYOUT}")
            self.workbook = found[-1]
        else:
            self.workbook = Path(workbook) if Path(workbook).is_absolute() else self.root / workbook
        self.sheet = sheet
        self.frames_root = self.root / frames_dir
        self.fractional, self.onset_zero = fractional, onset_zero

    def _find_header(self, ws) -> tuple[int, dict[str, int]] | None:
        for r, row in enumerate(ws.iter_rows(values_only=True, max_row=_HEADER_SEARCH_ROWS), start=1):
            names = [str(c).strip().lower() if c is not None else "" for c in (row or ())]
            if all(req in names for req in REQUIRED):
                return r, {n: i for i, n in enumerate(names) if n}
        return None

    def _parse(self) -> list[SpottingVideo]:
        wb = open_workbook(self.workbook, LAYOUT)
        try:
            if self.sheet is not None:
                if self.sheet not in wb.sheetnames:
                    raise DatasetError(f"{self.workbook}: no sheet {self.sheet!r} (sheets: {wb.sheetnames})")
                candidates = [self.sheet]
            else:
                candidates = ([SHEET] if SHEET in wb.sheetnames else []) + [s for s in wb.sheetnames if s != SHEET]
            ws, header = None, None
            for name in candidates:
                header = self._find_header(wb[name])
                if header is not None:
                    ws = wb[name]
                    break
            if ws is None:
                raise DatasetError(f"{self.workbook}: no sheet of {candidates} has a header row with the columns "
                                   f"{', '.join(HEADER)} in its first {_HEADER_SEARCH_ROWS} rows")
            header_row, col = header
            rows = [(r, row) for r, row in _rows(ws) if r > header_row]
        finally:
            wb.close()
        raw: dict[str, list[Row]] = defaultdict(list)
        sheet_rows: dict[str, list[AnnotationRow]] = defaultdict(list)  # every row, before the policies
        subject_of: dict[str, str] = {}
        for r, row in rows:
            where = f"{self.workbook}, sheet {ws.title!r}, row {r}"
            cell = lambda name: row[col[name]] if col[name] < len(row) else None  # noqa: E731
            filename = str(cell("filename") or "").strip()
            parts = filename.split("_")
            if len(parts) < 3 or not parts[0].isdigit():
                raise DatasetError(f"{where}: Filename {cell('filename')!r} is not <subject>_<video>_<index> "
                                   f"(e.g. 006_1_2)")
            video = f"{parts[0]}_{parts[1]}"
            subj = cell("subject")
            try:
                subject = f"{int(float(subj)):03d}"
            except (TypeError, ValueError):
                raise DatasetError(f"{where}: Subject {subj!r} is not a subject number") from None
            if int(parts[0]) != int(subject):
                raise DatasetError(f"{where}: Subject {subj!r} does not match Filename {filename!r}")
            kind = _kind(cell("type"))
            if kind is None:
                raise DatasetError(f"{where}: Type {cell('type')!r} is neither 'Macro' nor 'Micro - 1/2'")
            onset, f1 = parse_frame(cell("onset"), where, "Onset", self.fractional)
            apex, f2 = parse_frame(cell("apex"), where, "Apex", self.fractional)
            offset, f3 = parse_frame(cell("offset"), where, "Offset", self.fractional)
            self.stats["fractional_frames"] += int(f1) + int(f2) + int(f3)
            sheet_rows[video].append(AnnotationRow("sammlv", kind, float(cell("onset")), float(cell("apex")),
                                                   float(cell("offset")), where=where))
            subject_of[video] = subject
            if apex == -1:
                self.stats["apex_missing"] += 1
            if onset == 0:
                if self._drop_unannotated(self.onset_zero, "onset_zero", "Onset", where):
                    continue
                if apex < 1:
                    raise DatasetError(f"{where}: Onset 0 (not annotated) and Apex {apex}: cannot take onset := apex")
                onset = apex
                self.stats["onset_zero_to_apex"] += 1
            self._check_frames(onset, offset, where, columns=("Onset", "Offset"))
            raw[video].append((onset, offset, kind, where))
            self.stats["rows"] += 1
        videos = [self._video(self.frames_root / v, v, subject_of[v], raw.get(v, []), rows_of[0].where, rows_of)
                  for v, rows_of in sorted(sheet_rows.items()) if raw.get(v) or self.include_unannotated]
        if self.include_unannotated and self.frames_root.is_dir():
            for path in sorted(self.frames_root.iterdir()):
                if path.is_dir() and re.fullmatch(r"\d+_\d+", path.name) and path.name not in sheet_rows:
                    videos.append(self._video(path, path.name, f"{int(path.name.split('_')[0]):03d}", [], ""))
                    self.stats["unannotated_videos"] += 1
        self._log_counts((("fractional_frames", f"fractional frame numbers ({self.fractional})"),
                          ("onset_zero_to_apex", "onset 0 -> apex"), ("onset_zero_dropped", "onset 0 dropped"),
                          ("apex_missing", "apex -1 (not annotated, unused)"),
                          ("offset_clamped", "offset clamped to the last frame")), self.workbook)
        self.stats["videos"] = len(videos)
        return sorted(videos, key=lambda v: natural_key(v.video_id))

    def _video(self, path: Path, video: str, subject: str, items: Sequence[Row], where: str,
               annotations: Sequence[AnnotationRow] = ()) -> SpottingVideo:
        if not path.is_dir():
            raise DatasetError(f"{where}: frame folder {path} not found (expected layout:\n{LAYOUT})")
        return self._make_video(path, video, subject, items, columns=("Onset", "Offset"), annotations=annotations)


# ---------------------------------------------------------------------- miniature tree (tests, demos)
LEGEND = [("SAMM Long Videos - FACS coded movements (miniature written by fertrain)",),
          (None,), ("Type: Macro = macro-movement; Micro - 1/2 = micro-movement (<= 1/2 s)",),
          ("Frame numbers are 1-based",)]


def write_sammlv_workbook(path: str | Path, rows: Sequence[Sequence], sheet: str = SHEET,
                          legend: Sequence[Sequence] = LEGEND) -> Path:
    """Write a workbook in the release layout: ``legend`` rows, the :data:`HEADER` row, then ``rows``."""
    return write_workbook(path, ((sheet, [*legend, HEADER, *rows]),))


def make_miniature_sammlv(root: str | Path, subjects: Sequence[int] = (6, 7, 8), num_frames: int = 64,
                          size: int = 32, seed: int = 0, version: int = 3) -> Path:
    """Write a tiny SAMM-LV tree in the release layout (workbook + ``SAMM_longvideos`` frame folders).

    Per subject ``s``: video ``<s>_1`` with a macro row (frames 5-30, 1-based), a ``Micro - 1/2`` row with a
    fractional onset (40.6: 41 rounded, 40 floored), apex -1 and offset 47, and video ``<s>_2`` with a macro row
    whose onset is 0 (apex 12: onset := apex, offset 30). The first subject also has an unannotated video ``<s>_3``.
    Frames ``<video>_0001.jpg ...`` (``num_frames`` >= 48, ``size`` px).

    Returns:
        ``root``.
    """
    if num_frames < 48:
        raise ValueError(f"make_miniature_sammlv needs num_frames >= 48, got {num_frames}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for i, s in enumerate(subjects):
        v1, v2 = f"{s:03d}_1", f"{s:03d}_2"
        rows.append((s, f"{v1}_1", "1", 5, 15, 30, 26, "Macro", "12", ""))
        rows.append((s, f"{v1}_2", "1", 40.6, -1, 47, 8, "Micro - 1/2", "4", "apex not coded"))
        rows.append((s, f"{v2}_1", "2", 0, 12, 30, 19, "Macro", "1+2", ""))
        frames = root / "SAMM_longvideos"
        name = lambda v: (lambda n: f"{v}_{n:04d}.jpg")  # noqa: E731
        write_frames(frames / v1, num_frames, size, [(4, 29), (39, 46)], rng, name=name(v1))
        write_frames(frames / v2, num_frames, size, [(11, 29)], rng, name=name(v2))
        if i == 0:
            v3 = f"{s:03d}_3"
            write_frames(frames / v3, num_frames, size, [], rng, name=name(v3))
    write_sammlv_workbook(root / f"SAMM_LongVideos_V{version}_Release.xlsx", rows)
    return root
