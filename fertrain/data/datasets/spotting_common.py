"""What the workbook-annotated long-video spotting datasets share (:mod:`~fertrain.data.datasets.casme2`,
:mod:`~fertrain.data.datasets.sammlv`).

:class:`AnnotatedLongVideos`, their base, holds the common constructor arguments (``root``, ``offset_beyond``,
``include_unannotated``, ``fps``), parses once (:meth:`AnnotatedLongVideos.videos`), applies the ``error``/``drop``
part of the "frame number 0 = not annotated" policies, checks a row's frame numbers (1-based, offset >= onset), turns
a frame folder and its annotation rows into a :class:`~fertrain.data.spotting_data.SpottingVideo` with 0-based
intervals (``offset_beyond`` clamp/error) and logs the policy counts. Sheet layouts, naming and the other row checks
stay in the dataset modules. :func:`write_workbook` writes the miniature workbooks of the tests and demos.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from fertrain.data.readers import list_frame_files
from fertrain.data.records import DatasetError
from fertrain.data.spotting_data import SPOTTING_CLASS_NAMES, SpottingVideo, first_frame_number
from fertrain.spotting.intervals import AnnotationRow, Interval

#: One annotation row: ``(onset, offset, kind, where)``, 1-based frame numbers as in the frame file names, kind
#: ``"macro"``/``"micro"``, ``where`` = ``"<workbook>, sheet '<name>', row <n>"`` for messages.
Row = tuple[int, int, str, str]


class AnnotatedLongVideos:
    """Base of the long-video datasets annotated in a workbook (CAS(ME)^2, SAMM-LV).

    Subclasses implement ``_parse() -> list[SpottingVideo]`` (called once, by :meth:`videos`) and set
    :attr:`dataset_name`.

    Args:
        root: dataset root (must be a folder).
        offset_beyond: an offset past the video's last frame: ``"clamp"`` (to the last frame, counted as
            ``stats["offset_clamped"]``) or ``"error"``.
        include_unannotated: also list the frame folders without intervals.
        fps: frame rate (frames per second).
        layout: the expected layout, quoted in the message of a missing root.

    Attributes:
        stats: counts of what the parser did (``defaultdict(int)``).

    Raises:
        ValueError: ``offset_beyond`` is not ``"clamp"`` or ``"error"``.
        DatasetError: ``root`` is not a folder.
    """

    class_names: tuple[str, ...] = SPOTTING_CLASS_NAMES
    dataset_name: str = ""  # in messages and log lines, e.g. "CAS(ME)^2"

    def __init__(self, root: str | Path, offset_beyond: str, include_unannotated: bool, fps: float,
                 layout: str) -> None:
        if offset_beyond not in ("clamp", "error"):
            raise ValueError(f"offset_beyond must be 'clamp' or 'error', got {offset_beyond!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.dataset_name} root {self.root} does not exist; expected layout:\n{layout}")
        self.offset_beyond = offset_beyond
        self.include_unannotated = include_unannotated
        self.fps = float(fps)
        self.stats: dict[str, int] = defaultdict(int)
        self._videos: list[SpottingVideo] | None = None

    def _parse(self) -> list[SpottingVideo]:
        raise NotImplementedError

    def videos(self) -> list[SpottingVideo]:
        """All long videos (parsed once), in the order the class docstring gives.

        Raises:
            DatasetError: see the class docstring.
        """
        if self._videos is None:
            self._videos = self._parse()
        return list(self._videos)

    def _drop_unannotated(self, policy: str, policy_name: str, column: str, where: str) -> bool:
        """A row whose ``column`` frame is 0 (not annotated), under ``policy`` (the value of ``policy_name``):
        ``"error"`` raises, ``"drop"`` counts ``stats[f"{policy_name}_dropped"]`` and returns True (leave the row
        out), ``"apex"`` returns False (the caller takes the apex).

        Raises:
            DatasetError: ``policy == "error"`` (names ``where``, ``column`` and ``policy_name``).
        """
        if policy == "error":
            raise DatasetError(f"{where}: {column} 0 (not annotated) and {policy_name}='error'")
        if policy == "drop":
            self.stats[f"{policy_name}_dropped"] += 1
            return True
        return False

    @staticmethod
    def _check_frames(onset: int, offset: int, where: str, columns: tuple[str, str] = ("onset", "offset"),
                      hint: str = "") -> None:
        """Check an annotation row's frame numbers: ``onset >= 1`` (1-based) and ``offset >= onset``.

        Args:
            columns: the sheet's names of the onset and offset columns, for messages.
            hint: appended to the 1-based message (e.g. ``" (img1.jpg is frame 1)"``).

        Raises:
            DatasetError: either rule is broken (names ``where`` and the frame numbers).
        """
        if onset < 1:
            raise DatasetError(f"{where}: {columns[0]} {onset}: frame numbers are 1-based{hint}")
        if offset < onset:
            raise DatasetError(f"{where}: {columns[1]} {offset} < {columns[0]} {onset}")

    def _make_video(self, path: Path, video_id: str, subject: str, items: Sequence[Row],
                    columns: tuple[str, str] = ("onset", "offset"),
                    annotations: Sequence[AnnotationRow] = ()) -> SpottingVideo:
        """The frame folder ``path`` and its annotation rows as a :class:`SpottingVideo`.

        Frame number ``n`` becomes the 0-based index ``n - first``, ``first`` the number of the folder's first frame
        (:func:`~fertrain.data.spotting_data.first_frame_number`); an offset past the last frame follows
        ``offset_beyond``. Intervals are sorted by (onset, offset, kind).

        Args:
            path: the frame folder.
            video_id, subject: the video's names (:class:`SpottingVideo`).
            items: the video's annotation rows (:data:`Row`).
            columns: the sheet's names of the onset and offset columns, for messages.
            annotations: the video's raw sheet rows (all of them, also those the reader's policies dropped); they
                get the folder's first frame number and frame count and are kept on the video.

        Raises:
            DatasetError: the folder is empty or its first frame has no number; an onset outside the video; an
                offset past its end under ``offset_beyond="error"`` (names the row, the frame and ``path``).
        """
        n = len(list_frame_files(path))
        first = first_frame_number(path)
        intervals = []
        for onset, offset, kind, where in items:
            a, b = onset - first, offset - first
            if a < 0 or a >= n:
                raise DatasetError(f"{where}: {columns[0]} {onset} is outside the {n} frames of {path} "
                                   f"(first frame number {first})")
            if b >= n:
                if self.offset_beyond == "error":
                    raise DatasetError(f"{where}: {columns[1]} {offset} is past the last of the {n} frames of {path}")
                b = n - 1
                self.stats["offset_clamped"] += 1
            intervals.append(Interval(a, b, kind))
        intervals.sort(key=lambda iv: (iv.onset, iv.offset, iv.kind))
        raw = tuple(dataclasses.replace(r, first=first, num_frames=n) for r in annotations)
        return SpottingVideo(path=path, video_id=video_id, subject=subject, num_frames=n, fps=self.fps,
                             intervals=tuple(intervals), annotations=raw)

    def _log_counts(self, counts: Sequence[tuple[str, str]], workbook: Path) -> None:
        """Log a warning per nonzero ``stats[key]`` of ``counts`` (``(key, what)`` pairs), on the subclass module's
        logger."""
        log = logging.getLogger(type(self).__module__)
        for key, what in counts:
            if self.stats.get(key):
                log.warning("%s %s: %d × %s", self.dataset_name, workbook.name, self.stats[key], what)


# ---------------------------------------------------------------------- miniature trees (tests, demos)
def write_workbook(path: str | Path, sheets: Sequence[tuple[str, Sequence[Sequence]]]) -> Path:
    """Write an ``.xlsx`` workbook (openpyxl) with the ``(title, rows)`` sheets in order; parent folders are created.

    Returns:
        ``path``.
    """
    import openpyxl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    for i, (title, rows) in enumerate(sheets):
        ws = wb.active if i == 0 else wb.create_sheet(title)
        ws.title = title
        for row in rows:
            ws.append(list(row))
    wb.save(path)
    return path
