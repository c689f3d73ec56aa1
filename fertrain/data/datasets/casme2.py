"""CAS(ME)^2, long-video part: macro- and micro-expression spotting, leave-one-subject-out.

Source: F. Qu, S.-J. Wang, W.-J. Yan, H. Li, S. Wu, X. Fu, "CAS(ME)^2: A Database for Spontaneous Macro-Expression
and Micro-Expression Spotting and Recognition", IEEE Transactions on Affective Computing 9(4), 2018; the
annotation workbook of the release; MEGC2020 spotting protocol (He, Wang, Li, Yap, Sun, Zhao, Li, "Spotting
macro- and micro-expression intervals in long video sequences", FG 2020 MEGC). Licensed data: request access from
the authors; fertrain ships none of it.

Expected layout (the release; sheet and column layout as read by the MEGC2020 baseline
(HeyingGithub/Baseline-project-for-MEGC2020_spotting, ``MDMD_results/dataset_new/CASME_2.py``,
``ME2.generate_dataset``) and SoftNet (genbing99/SoftNet-SpotME, ``load_label.py``, ``load_excel``))::

    <root>/
      CAS(ME)^2code_final.xlsx
        <annotation sheet> (the first sheet, 'CASFEcode_final' in the release), 357 rows, NO header:
            A subject number (1..22)   B clip name ('anger1_1': <video name>_<index>)
            C onset  D apex  E offset  (1-based frame numbers; offset 0 = not annotated)
            F action units  G emotion  H type ('macro-expression' | 'micro-expression')  I self-reported emotion
        'naming rule1': A folder number (15 -> rawpic/s15)  B folder name ('s15', the name the MEGC2020 baseline
                        and SoftNet use for the subject)  C subject number (column A of the annotation sheet)
        'naming rule2': A video code (101 or '0101')  B video name ('disgust1')
      rawpic/
        s15/15_0101disgustingteeth/img1.jpg img2.jpg ...     # s<folder>/<folder>_<4-digit code><words>/img<n>.jpg

Counts of the release: 300 macro + 57 micro intervals, 22 subjects, 30 fps (the public evaluators' ground-truth
files agree: MEGC2020's ``dataset_new/data/CAS(ME)^2_Sets/all_Info.txt`` and AUW-GCN's ``info_csv/cas(me)_new.csv``
hold 300 + 57 rows; 44 macro rows have offset 0). A naming sheet's first row is taken as a header (and logged)
only if none of its cells is a number.

Frames: annotation frame ``n`` is the file ``img<n>.jpg``; the 0-based frame index is ``n - first`` where
``first`` is the number of the folder's first frame (1 in the release), so 1-based numbers become 0-based.

Policies (config values; defaults documented) for the intervals the reader gives (training, and the ``fertrain``
evaluation protocol). Every row is also kept raw on its video (``SpottingVideo.annotations``) so that an evaluation
protocol can apply its own evaluator's policy (:class:`fertrain.spotting.protocols.GroundTruthPolicy`):

- ``offset_zero``: offset 0 ("not annotated"): ``"apex"`` (default: offset := apex, as the MEGC2020 baseline,
  ``CASME_2.py`` ``ME2.generate_dataset``, and SoftNet, ``load_label.py`` ``load_gt``), ``"drop"`` (the row is
  left out, counted and logged) or ``"error"``. (AUW-GCN keeps the 0, so those rows are never found.)
- ``offset_beyond``: an offset past the video's last frame: ``"clamp"`` (default, counted and logged) or
  ``"error"``.
- ``include_unannotated``: also return the frame folders of the listed subjects that have no interval (default
  True: every long video is searched, and predictions there are false positives under the ``fertrain``,
  ``megc2020`` and ``auwgcn`` evaluation protocols; ``softnet`` and ``strs`` score only videos with a ground truth).

Subjects are named ``s<folder>`` (``"s15"``), videos ``<folder>_<code>`` (``"15_0101"``).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fertrain.data.datasets.spotting_common import AnnotatedLongVideos, Row, write_workbook
from fertrain.data.records import DatasetError
from fertrain.data.spotting_data import SPOTTING_CLASS_NAMES, SpottingVideo, open_workbook, parse_frame
from fertrain.spotting.intervals import AnnotationRow

log = logging.getLogger(__name__)

WORKBOOK = "CAS(ME)^2code_final.xlsx"
RULE1_SHEET = "naming rule1"
RULE2_SHEET = "naming rule2"
FPS = 30.0
TYPES = {"macro-expression": "macro", "micro-expression": "micro"}

LAYOUT = """\
<root>/
  CAS(ME)^2code_final.xlsx   (first sheet: subject, clip, onset, apex, offset, AUs, emotion, type, self-report;
                              'naming rule1': folder number, folder name s15, subject; 'naming rule2': code, video name)
  rawpic/s<folder>/<folder>_<4-digit code>*/img1.jpg ..."""


def _is_number(v) -> bool:
    if isinstance(v, bool) or v is None:
        return False
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _sheet(wb, name: str, path: Path):
    for sheet_name in wb.sheetnames:
        if sheet_name.strip().lower() == name.lower():
            return wb[sheet_name]
    raise DatasetError(f"{path}: no sheet {name!r} (sheets: {wb.sheetnames})")


def _rows(ws) -> Iterable[tuple[int, tuple]]:
    """``(excel row number, values)`` of the non-blank rows."""
    for r, row in enumerate(ws.iter_rows(values_only=True), start=1):
        if row and any(c is not None and str(c).strip() for c in row):
            yield r, tuple(row)


def _naming_rows(ws, workbook: Path) -> Iterable[tuple[str, tuple]]:
    """``(where, values)`` of a naming sheet's non-blank rows; a first row without any number is a header (logged)."""
    for i, (r, row) in enumerate(_rows(ws)):
        where = f"{workbook}, sheet {ws.title!r}, row {r}"
        if i == 0 and not any(_is_number(c) for c in row):
            log.info("%s: taken as a header row: %r", where, row)
            continue
        yield where, row


class CASME2LongVideos(AnnotatedLongVideos):
    """CAS(ME)^2 long videos with their macro/micro intervals (module docstring).

    :meth:`videos` lists them sorted by subject and video.

    Args:
        root: dataset root holding the workbook and the frame folders.
        workbook: workbook file name (relative to ``root``) or path.
        annotation_sheet: name of the annotation sheet (None: the first sheet that is not a naming sheet).
        frames_dir: folder of the frame folders (``rawpic``; a cropped copy with the same layout works too).
        offset_zero: ``"apex"``, ``"drop"`` or ``"error"`` (module docstring).
        offset_beyond: ``"clamp"`` or ``"error"``.
        include_unannotated: also list the subjects' frame folders without intervals.
        fps: frame rate (30).

    Attributes:
        stats: counts of what the parser did (rows, policies applied, blank rows, videos).

    Raises:
        DatasetError: missing workbook/sheet/frame folder; a malformed row (names workbook, sheet and row:
            non-numeric frame, offset < onset, unknown type, unknown subject or video name).
    """

    class_names: tuple[str, ...] = SPOTTING_CLASS_NAMES
    dataset_name = "CAS(ME)^2"

    def __init__(self, root: str | Path, workbook: str = WORKBOOK, annotation_sheet: str | None = None,
                 frames_dir: str = "rawpic", offset_zero: str = "apex", offset_beyond: str = "clamp",
                 include_unannotated: bool = True, fps: float = FPS) -> None:
        if offset_zero not in ("apex", "drop", "error"):
            raise ValueError(f"offset_zero must be 'apex', 'drop' or 'error', got {offset_zero!r}")
        super().__init__(root, offset_beyond, include_unannotated, fps, LAYOUT)
        self.workbook = Path(workbook) if Path(workbook).is_absolute() else self.root / workbook
        self.annotation_sheet = annotation_sheet
        self.frames_root = self.root / frames_dir
        self.offset_zero = offset_zero

    # ----------------------------------------------------------------- parsing
    def _naming(self, wb) -> tuple[dict[int, int], dict[str, str]]:
        rule1, rule2 = _sheet(wb, RULE1_SHEET, self.workbook), _sheet(wb, RULE2_SHEET, self.workbook)
        subject_folder: dict[int, int] = {}
        for where, row in _naming_rows(rule1, self.workbook):
            if len(row) < 3 or not _is_number(row[0]) or not _is_number(row[2]):
                raise DatasetError(f"{where}: expected folder number (A), folder name (B, e.g. s15), subject "
                                   f"number (C), found {row[:3]!r}")
            subject_folder[int(float(row[2]))] = int(float(row[0]))
        video_code: dict[str, str] = {}
        for where, row in _naming_rows(rule2, self.workbook):
            if len(row) < 2 or not _is_number(row[0]) or row[1] is None or not str(row[1]).strip():
                raise DatasetError(f"{where}: expected video code (A, e.g. 0101) and video name (B, e.g. "
                                   f"disgust1), found {row[:2]!r}")
            video_code[str(row[1]).strip().lower()] = f"{int(float(row[0])):04d}"
        return subject_folder, video_code

    def _annotation_sheet(self, wb):
        if self.annotation_sheet is not None:
            return _sheet(wb, self.annotation_sheet, self.workbook)
        for name in wb.sheetnames:
            if not name.strip().lower().startswith("naming rule"):
                return wb[name]
        raise DatasetError(f"{self.workbook}: no annotation sheet (sheets: {wb.sheetnames})")

    def _video_folder(self, folder: int, code: str, where: str) -> Path:
        subject_dir = self.frames_root / f"s{folder}"
        matches = sorted(subject_dir.glob(f"{folder}_{code}*")) if subject_dir.is_dir() else []
        matches = [m for m in matches if m.is_dir()]
        if not matches:
            raise DatasetError(f"{where}: frame folder {subject_dir}/{folder}_{code}* not found (expected layout:\n"
                               f"{LAYOUT})")
        if len(matches) > 1:
            raise DatasetError(f"{where}: {len(matches)} frame folders match {subject_dir}/{folder}_{code}*: "
                               f"{[m.name for m in matches]}")
        return matches[0]

    def _parse(self) -> list[SpottingVideo]:
        wb = open_workbook(self.workbook, LAYOUT)
        try:
            subject_folder, video_code = self._naming(wb)
            ws = self._annotation_sheet(wb)
            rows = list(_rows(ws))
        finally:
            wb.close()
        self.stats["blank_rows"] = ws.max_row - len(rows) if ws.max_row else 0
        raw: dict[tuple[int, str], list[Row]] = defaultdict(list)  # (folder, code) -> rows
        sheet_rows: dict[tuple[int, str], list[AnnotationRow]] = defaultdict(list)  # every row, before policies
        for r, row in rows:
            where = f"{self.workbook}, sheet {ws.title!r}, row {r}"
            if len(row) < 8:
                raise DatasetError(f"{where}: expected at least 8 columns (subject, clip, onset, apex, offset, AUs, "
                                   f"emotion, type), found {len(row)}: {row!r}")
            subj, clip, t = row[0], row[1], str(row[7] or "").strip().lower()
            if not _is_number(subj) or int(float(subj)) not in subject_folder:
                raise DatasetError(f"{where}: subject {subj!r} is not listed in sheet {RULE1_SHEET!r} "
                                   f"(known: {sorted(subject_folder)})")
            name = str(clip or "").strip().split("_")[0].lower()
            if name not in video_code:
                raise DatasetError(f"{where}: clip {clip!r}: video name {name!r} is not listed in sheet "
                                   f"{RULE2_SHEET!r}")
            if t not in TYPES:
                raise DatasetError(f"{where}: type {row[7]!r} is not one of {sorted(TYPES)}")
            onset, _ = parse_frame(row[2], where, "C (onset)")
            apex, _ = parse_frame(row[3], where, "D (apex)")
            offset, _ = parse_frame(row[4], where, "E (offset)")
            folder = subject_folder[int(float(subj))]
            sheet_rows[(folder, video_code[name])].append(AnnotationRow("casme2", TYPES[t], onset, apex, offset,
                                                                        where=where))
            if offset == 0:
                if self._drop_unannotated(self.offset_zero, "offset_zero", "offset", where):
                    continue
                if apex < onset:
                    raise DatasetError(f"{where}: offset 0 (not annotated) and apex {apex} < onset {onset}: "
                                       f"cannot take offset := apex")
                offset = apex
                self.stats["offset_zero_to_apex"] += 1
            self._check_frames(onset, offset, where, hint=" (img1.jpg is frame 1)")
            raw[(folder, video_code[name])].append((onset, offset, TYPES[t], where))
            self.stats["rows"] += 1
        videos: list[SpottingVideo] = []
        seen: set[Path] = set()
        for (folder, code), rows_of in sorted(sheet_rows.items()):
            items = raw.get((folder, code), [])
            if not items and not self.include_unannotated:
                continue  # every row of this video dropped by the policies
            path = self._video_folder(folder, code, rows_of[0].where)
            seen.add(path)
            videos.append(self._make_video(path, f"{folder}_{code}", f"s{folder}", items, annotations=rows_of))
        if self.include_unannotated:
            for folder in sorted(set(subject_folder.values())):
                subject_dir = self.frames_root / f"s{folder}"
                if not subject_dir.is_dir():
                    self.stats["subjects_without_folder"] += 1
                    continue
                for path in sorted(subject_dir.iterdir()):
                    m = re.match(rf"{folder}_(\d{{4}})", path.name)
                    if path.is_dir() and m and path not in seen:
                        videos.append(self._make_video(path, f"{folder}_{m.group(1)}", f"s{folder}", []))
                        self.stats["unannotated_videos"] += 1
        self._log_counts((("offset_zero_to_apex", "offset 0 -> apex"), ("offset_zero_dropped", "offset 0 dropped"),
                          ("offset_clamped", "offset clamped to the last frame"),
                          ("subjects_without_folder", "subjects of 'naming rule1' without a frame folder")),
                         self.workbook)
        self.stats["videos"] = len(videos)
        return sorted(videos, key=lambda v: (int(v.subject[1:]), v.video_id))


# ---------------------------------------------------------------------- miniature tree (tests, demos)
def write_casme2_workbook(path: str | Path, annotations: Sequence[Sequence], naming_rule1: Sequence[Sequence],
                          naming_rule2: Sequence[Sequence], annotation_sheet: str = "CASFEcode_final") -> Path:
    """Write a workbook in the release layout: the annotation sheet first (no header), then the naming sheets.

    Args:
        annotations: rows ``(subject, clip, onset, apex, offset, AUs, emotion, type, self_report)``.
        naming_rule1: rows ``(folder number, folder name 's15', subject number)``.
        naming_rule2: rows ``(code, video_name)``.
    """
    return write_workbook(path, ((annotation_sheet, annotations), (RULE1_SHEET, naming_rule1),
                                 (RULE2_SHEET, naming_rule2)))


def write_frames(folder: Path, num_frames: int, size: int, intervals: Sequence[tuple[int, int]],
                 rng: np.random.Generator, name=lambda n: f"img{n}.jpg", first: int = 1) -> None:
    """Write ``num_frames`` tiny JPEGs: noise around a grey level, a bright square on 0-based ``intervals``."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    base = rng.integers(60, 120)
    for i in range(num_frames):
        img = np.clip(base + rng.normal(0, 4, (size, size, 3)), 0, 255).astype(np.uint8)
        if any(a <= i <= b for a, b in intervals):
            img[size // 3: 2 * size // 3, size // 3: 2 * size // 3] = 220
        cv2.imwrite(str(folder / name(first + i)), img)


def make_miniature_casme2(root: str | Path, folders: Sequence[int] = (15, 16, 19), num_frames: int = 48,
                          size: int = 32, seed: int = 0) -> Path:
    """Write a tiny CAS(ME)^2 tree in the release layout (workbook + ``rawpic`` frame folders).

    Per subject folder ``f`` (subject number = its position + 1): video ``disgust1`` (code 0101) with one macro
    row (frames 5-24, 1-based) and one micro row (frames 30-36), and video ``anger1`` (code 0401) with one macro
    row whose offset is 0 (apex 20: offset := apex by default). The first subject also has an unannotated video
    (code 0502). Names follow the release (``s15/15_0101disgustingteeth``). Frames: ``num_frames`` JPEGs
    ``img1.jpg ...`` of ``size`` px (>= 40 frames).

    Returns:
        ``root``.
    """
    if num_frames < 40:
        raise ValueError(f"make_miniature_casme2 needs num_frames >= 40, got {num_frames}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    rule1 = [(f, f"s{f}", i + 1) for i, f in enumerate(folders)]
    rule2 = [("0101", "disgust1"), ("0401", "anger1"), ("0502", "happy2")]
    rows = []
    for i, f in enumerate(folders):
        s = i + 1
        rows.append((s, "disgust1_1", 5, 12, 24, "4+7", "disgust", "macro-expression", "disgust"))
        rows.append((s, "disgust1_2", 30, 33, 36, "12", "others", "micro-expression", "others"))
        rows.append((s, "anger1_1", 10, 20, 0, "4", "anger", "macro-expression", "anger"))
        write_frames(root / "rawpic" / f"s{f}" / f"{f}_0101disgustingteeth", num_frames, size, [(4, 23), (29, 35)], rng)
        write_frames(root / "rawpic" / f"s{f}" / f"{f}_0401angrywhole", num_frames, size, [(9, 19)], rng)
        if i == 0:
            write_frames(root / "rawpic" / f"s{f}" / f"{f}_0502happycoffee", num_frames, size, [], rng)
    write_casme2_workbook(root / WORKBOOK, rows, rule1, rule2)
    return root
