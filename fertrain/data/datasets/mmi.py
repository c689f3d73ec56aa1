"""MMI Facial Expression Database, posed basic-expression sequences, subject-independent 10-fold protocol.

Source: M. Pantic, M. Valstar, R. Rademaker, L. Maat, "Web-based database for facial expression analysis",
ICME 2005; M. Valstar, M. Pantic, "Induced disgust, happiness and surprise: an addition to the MMI facial expression
database", LREC workshop 2010. Database site https://mmifacedb.eu/ (licensed; fertrain ships none of it).

Layout as downloaded (``layout="sessions"``; ``"auto"`` takes it when ``<root>/Sessions`` exists)::

    <root>/Sessions/<n>/<name>.avi               # the sequence
    <root>/Sessions/<n>/session.xml              # session metadata: subject, tracks (video file, view)
    <root>/Sessions/<n>/<name>.xml               # <Metatag Name="Emotion" Value="1..6"/>
    <root>/Sessions/<n>/<name>-oao_aucs.xml      # FACS action units per frame (not read)
    <root>/labels.csv                            # optional override: session,subject,label

What public MMI readers confirm: the emotion is the ``Metatag`` named ``Emotion`` of ``<name>.xml``, values 1..6 =
anger, disgust, fear, happy, sadness, surprise (a public MMI frame extractor found by code search reads
``find("Metatag", {"Name": "Emotion"}).get("Value")`` and maps ``Value - 1`` into that list; another reads the same
tag with ElementTree); ``session.xml`` has ``track`` elements with a ``view`` attribute and ``annotation``
elements with a ``filename`` (the same extractor). *Not confirmed for MMI by public material*: where the subject id
lives. fertrain reads the ``id`` attribute of the ``<subject>`` element of ``session.xml``, as the sister database
MAHNOB-HCI (same iBUG database platform) stores it (``sfrullo/master_thesis``, ``emosm/dataset/mahnob/session.py``
``Session.__init__`` reads ``session['subject']`` and its ``@id``); when a session's XML has no subject, or to
correct one, write ``labels.csv`` (``session,subject,label``): its rows override the XML per session. Sessions
without an ``Emotion`` tag (most of MMI: AU-only sessions), with a value outside 1..6, without a video or without a
subject are counted per reason (:attr:`MMI.dropped`, logged) and not used.

fertrain's own layout (``layout="labels"``, no XML): ``labels.csv`` plus ``faces/<subject>/<session>/*.jpg``
(``source="frames"``) or ``<subject>/<session>.avi`` (``source="videos"``, ``videos_dir``).

Frames (``source="frames"``): the folders the face extractor writes for the session videos
(``python -m fertrain.preprocess --input <root>/Sessions --output <root>/faces``: ``faces/<n>/<name>/``), also
found as ``faces/Sessions/<n>/<name>/`` or ``faces/<subject>/<n>/``.
Usual selection (not enforced): the sequences with a frontal face and one of the six basic emotions (205 sequences
of 30 subjects in many papers), each onset -> apex -> offset, read whole.

Label map: 6 classes, no neutral, canonical order of :mod:`fertrain.data.datasets.common`:
Angry, Disgust, Fear, Happy, Sad, Surprise. ``labels.csv`` labels are matched by name (case-insensitive; Anger,
Happiness, Sadness, ... accepted).

Protocol: subject-independent 10-fold cross-validation (the usual MMI protocol): ``fold=k`` tests on the subjects
of fold ``k`` and trains on the others; ``"val"`` = ``"test"`` (no validation set in published results). Folds
come from ``folds`` (a ``subject,fold`` csv) or, by default, sorted subjects dealt round-robin
(:func:`fertrain.data.datasets.common.subject_folds`); the datamodule writes the folds used to
``<run_dir>/folds.csv`` and the sessions with their subject, label and fold to ``<run_dir>/sessions.csv`` (a
file a paper can publish so others can repeat the exact split).
"""

from __future__ import annotations

import csv
import logging
import os
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from fertrain.data.datasets.common import (CANONICAL_6, SubjectFoldDataset, class_index, natural_key,
                                           synthetic_frames, write_frame_folder, write_video)
from fertrain.data.records import ClipRecord, DatasetError

log = logging.getLogger(__name__)

MMI_CLASS_NAMES: tuple[str, ...] = CANONICAL_6
# <Metatag Name="Emotion" Value="k"/>: k -> class (module docstring)
MMI_EMOTION_CODES: dict[int, str] = {1: "Angry", 2: "Disgust", 3: "Fear", 4: "Happy", 5: "Sad", 6: "Surprise"}
LABELS_HEADER = ["session", "subject", "label"]
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
DROP_REASONS = ("no_emotion", "other_emotion", "no_video", "no_subject")

LAYOUT = """\
<root>/Sessions/<n>/<name>.avi, session.xml (<subject id=...>), <name>.xml (<Metatag Name="Emotion" Value="1..6"/>)
<root>/labels.csv                      (optional override, or layout=labels: header session,subject,label)
<root>/faces/<n>/<name>/00000.jpg      (source="frames": python -m fertrain.preprocess)
classes: Angry, Disgust, Fear, Happy, Sad, Surprise"""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def read_session(folder: Path) -> dict[str, str | None]:
    """Parse one ``Sessions/<n>/`` folder: ``{"video", "subject", "emotion", "emotion_xml"}`` (None when absent).

    ``video``: the ``.avi`` named by a ``track``'s ``filename`` in ``session.xml``, else the only ``.avi`` in the
    folder. ``subject``: ``session.xml``'s ``<subject id=...>`` (module docstring). ``emotion``: the ``Value`` of
    ``<Metatag Name="Emotion">`` in ``<video stem>.xml`` (any element depth, tag case ignored).

    Raises:
        DatasetError: an XML file that does not parse (names the file and the parser's message).
    """
    info: dict[str, str | None] = {"video": None, "subject": None, "emotion": None, "emotion_xml": None}
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".avi" and not p.name.startswith("."))
    session_xml = folder / "session.xml"
    if session_xml.is_file():
        try:
            root = ET.parse(session_xml).getroot()
        except ET.ParseError as err:
            raise DatasetError(f"{session_xml}: not valid XML ({err})") from None
        for el in root.iter():
            tag = _local(el.tag)
            if tag == "subject" and info["subject"] is None:
                info["subject"] = (el.get("id") or el.get("Id") or el.get("ID") or (el.text or "").strip()) or None
            if tag == "track" and info["video"] is None:
                name = el.get("filename") or ""
                if name.lower().endswith(".avi") and (folder / name).is_file():
                    info["video"] = str(folder / name)
    if info["video"] is None and len(videos) == 1:
        info["video"] = str(videos[0])
    stem = Path(info["video"]).stem if info["video"] else None
    candidates = [folder / f"{stem}.xml"] if stem else []
    candidates += [p for p in sorted(folder.glob("*.xml")) if p.name != "session.xml"
                   and not p.name.endswith("-oao_aucs.xml") and p not in candidates]
    for xml in candidates:
        if not xml.is_file():
            continue
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as err:
            raise DatasetError(f"{xml}: not valid XML ({err})") from None
        for el in root.iter():
            if _local(el.tag) == "metatag" and (el.get("Name") or el.get("name") or "").lower() == "emotion":
                info["emotion"] = (el.get("Value") or el.get("value") or "").strip()
                info["emotion_xml"] = str(xml)
                break
        if info["emotion"] is not None:
            break
    return info


class MMI(SubjectFoldDataset):
    """MMI sequences as :class:`ClipRecord` lists, one fold of subject-independent k-fold cross-validation.

    ``video_id`` is the session, ``subject`` the subject id, ``origin`` the file that gave the label (the session's
    emotion XML or ``labels.csv line N``). Parsing happens on the first :meth:`records` call; nothing is decoded
    (videos: the container's frame count).

    Args:
        root: MMI root (layouts in the module docstring).
        fold: held-out fold, ``1..num_folds``.
        num_folds: folds of the cross-validation (10).
        folds: optional ``subject,fold`` csv; None builds folds by the round-robin rule.
        source: ``"frames"`` or ``"videos"``.
        labels: label csv, relative to ``root`` or absolute (default ``labels.csv``): the label list of
            ``layout="labels"``, an optional per-session override of ``layout="sessions"``.
        frames_dir: frame-folder root relative to ``root`` or absolute (default ``faces``).
        videos_dir: ``layout="labels"``: video root relative to ``root`` or absolute (default ``.``).
        video_ext: ``layout="labels"``: video extension including the dot (default ``.avi``).
        layout: ``"auto"``, ``"sessions"`` or ``"labels"``.

    Attributes (after the first :meth:`records`):
        dropped: ``Counter`` of sessions not used, by reason (:data:`DROP_REASONS`).
        layout_used: ``"sessions"`` or ``"labels"``.

    Raises:
        ValueError: bad ``fold``/``num_folds``/``source``/``video_ext``/``layout``.
        DatasetError (from :meth:`records`): root or label csv missing; a malformed row or XML, a label outside the
            six classes, a session listed twice (names file and line); a subject missing from the fold list; an
            empty fold.
    """

    class_names: tuple[str, ...] = MMI_CLASS_NAMES
    name = "MMI"

    def __init__(self, root: str | Path, fold: int = 1, num_folds: int = 10, folds: str | Path | None = None,
                 source: str = "frames", labels: str = "labels.csv", frames_dir: str = "faces",
                 videos_dir: str = ".", video_ext: str = ".avi", layout: str = "auto") -> None:
        super().__init__(fold=fold, num_folds=num_folds, folds=folds)
        if source not in ("frames", "videos"):
            raise ValueError(f"MMI source must be 'frames' or 'videos', got {source!r}")
        if not video_ext.startswith("."):
            raise ValueError(f"MMI video_ext must start with a dot (e.g. '.avi'), got {video_ext!r}")
        if layout not in ("auto", "sessions", "labels"):
            raise ValueError(f"MMI layout must be 'auto', 'sessions' or 'labels', got {layout!r}")
        self.root = Path(root)
        self.source = source
        self.labels_path = self.root / labels
        self.frames_root = self.root / frames_dir
        self.media_root = self.root / (frames_dir if source == "frames" else videos_dir)
        self.video_ext = video_ext
        self.layout = layout
        self.layout_used: str | None = None
        self.dropped: Counter = Counter()

    def _parse(self) -> list[ClipRecord]:
        if not self.root.is_dir():
            raise DatasetError(f"MMI root {self.root} does not exist or is not a folder. Expected:\n{LAYOUT}")
        layout = self.layout
        if layout == "auto":
            layout = "sessions" if (self.root / "Sessions").is_dir() else "labels"
        self.layout_used = layout
        records = self._parse_sessions() if layout == "sessions" else self._parse_labels()
        if not records:
            where = self.root / "Sessions" if layout == "sessions" else self.labels_path
            raise DatasetError(f"MMI: {where} gives no usable sequence (dropped: {dict(self.dropped)}); expected "
                               f"sessions with an Emotion tag 1..6, a video and a subject:\n{LAYOUT}")
        return records

    def _parse_labels(self) -> list[ClipRecord]:
        if not self.labels_path.is_file():
            raise DatasetError(f"MMI label file {self.labels_path} does not exist and there is no Sessions/ folder. "
                               f"Expected the downloaded layout or a csv with header {','.join(LABELS_HEADER)}:\n"
                               f"{LAYOUT}")
        records = []
        for session, subject, label, line in self._read_labels():
            path = self.media_root / subject / (session if self.source == "frames" else session + self.video_ext)
            num_frames, fps = _probe(path)
            records.append(ClipRecord(path=path, label=label, video_id=session, num_frames=num_frames, fps=fps,
                                      subject=subject, origin=f"{self.labels_path.name} line {line}"))
        return records

    def _parse_sessions(self) -> list[ClipRecord]:
        override = {s: (subj, lab, line) for s, subj, lab, line in self._read_labels()} \
            if self.labels_path.is_file() else {}
        folders = sorted((d for d in (self.root / "Sessions").iterdir() if d.is_dir() and not d.name.startswith(".")),
                         key=lambda d: natural_key(d.name))
        records = []
        for folder in folders:
            session = folder.name
            info = read_session(folder)
            subject, origin = info["subject"], info["emotion_xml"]
            label: int | None = None
            if info["emotion"] is not None:
                try:
                    code = int(info["emotion"])
                except ValueError:
                    code = -1
                if code in MMI_EMOTION_CODES:
                    label = self.class_names.index(MMI_EMOTION_CODES[code])
            if session in override:
                subject, label, line = override[session]
                origin = f"{self.labels_path.name} line {line}"
            if label is None:
                self.dropped["no_emotion" if info["emotion"] is None else "other_emotion"] += 1
                continue
            if info["video"] is None:
                self.dropped["no_video"] += 1
                continue
            if not subject:
                self.dropped["no_subject"] += 1
                log.warning("MMI session %s: no subject in %s and no labels.csv row: not used (write the subject "
                            "into labels.csv)", session, folder / "session.xml")
                continue
            video = Path(info["video"])
            path = video if self.source == "videos" else self._frames_folder(session, video.stem, subject)
            num_frames, fps = _probe(path)
            records.append(ClipRecord(path=path, label=label, video_id=session, num_frames=num_frames, fps=fps,
                                      subject=str(subject), origin=origin))
        unknown = sorted(set(override) - {d.name for d in folders}, key=natural_key)
        if unknown:
            raise DatasetError(f"{self.labels_path}: {len(unknown)} sessions are not folders of "
                               f"{self.root / 'Sessions'}"
                               f", e.g. {unknown[:5]}")
        log.info("MMI: %d sessions used of %d (not used: %s)", len(records), len(folders),
                 ", ".join(f"{k}={self.dropped[k]}" for k in DROP_REASONS))
        return records

    def _frames_folder(self, session: str, stem: str, subject: str) -> Path:
        candidates = [self.frames_root / session / stem, self.frames_root / "Sessions" / session / stem,
                      self.frames_root / subject / session]
        return next((c for c in candidates if c.is_dir()), candidates[0])

    def save_protocol(self, out_dir: Path) -> list[Path]:
        """``folds.csv`` (``subject,fold``) and ``sessions.csv`` (``session,subject,label,fold,path``, relative to
        the root): the exact subject-independent split, for a paper's supplement."""
        written = super().save_protocol(out_dir)
        path = Path(out_dir) / "sessions.csv"
        rows = sorted({r.video_id: r for split in ("train", "test") for r in self._records[split]}.values(),
                      key=lambda r: natural_key(r.video_id))
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["session", "subject", "label", "fold", "path"])
            for r in rows:
                rel = os.path.relpath(r.path, self.root) if Path(r.path).is_absolute() else str(r.path)
                writer.writerow([r.video_id, r.subject, self.class_names[r.label], self.subject_fold[r.subject], rel])
        return [*written, path]

    def _read_labels(self) -> list[tuple[str, str, int, int]]:
        """Rows ``(session, subject, label index, line)`` of the label csv, checked."""
        path = self.labels_path
        rows: list[tuple[str, str, int, int]] = []
        first: dict[str, int] = {}
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [c.strip() for c in header] != LABELS_HEADER:
                raise DatasetError(f"{path}: line 1: expected the header {','.join(LABELS_HEADER)!r}, found {header!r}")
            for row in reader:
                line = reader.line_num
                if not any(c.strip() for c in row):
                    continue
                cells = [c.strip() for c in row]
                if len(cells) != 3 or not all(cells):
                    raise DatasetError(f"{path}: line {line}: expected 3 non-empty columns "
                                       f"({','.join(LABELS_HEADER)}), found {row!r}")
                session, subject, label = cells
                if session in first:
                    raise DatasetError(f"{path}: line {line}: session {session!r} is listed twice (first at line "
                                       f"{first[session]})")
                first[session] = line
                rows.append((session, subject, class_index(label, self.class_names, f"{path}: line {line}"), line))
        return rows


def _probe(path: Path) -> tuple[int, float | None]:
    """``(frames, fps)`` of a frame folder (image files, hidden ones excluded; fps unknown) or video (container
    header); 0 frames when missing or unreadable (reported by the datamodule)."""
    if path.is_dir():
        from fertrain.data.readers import count_frame_files

        return count_frame_files(path), None
    if not path.is_file():
        return 0, None
    from fertrain.data.readers import probe_video

    return probe_video(path)


def make_miniature_mmi(
    root: str | Path,
    subjects: int = 10,
    classes: Sequence[str] = MMI_CLASS_NAMES,
    num_frames: int = 6,
    size: int = 40,
    videos: bool = False,
    frames: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny MMI tree (fertrain's layout) of synthetic sequences, for tests and trying the pipeline.

    Subjects ``S001 ...`` each record one session per class in ``classes``; sessions are numbered ``1, 2, ...``
    as in MMI. Writes ``labels.csv``; ``frames`` writes ``faces/<subject>/<session>/00000.jpg ...``, ``videos``
    writes ``<subject>/<session>.avi`` (Motion-JPEG). Frames: ``size`` x ``size`` synthetic (see
    :func:`fertrain.data.datasets.common.synthetic_frames`).

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: an argument is out of range.
    """
    if subjects < 1 or num_frames < 1 or size < 8 or not (videos or frames):
        raise ValueError(f"make_miniature_mmi needs subjects, num_frames >= 1, size >= 8 and videos or frames; got "
                         f"{subjects}, {num_frames}, {size}, {videos}, {frames}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = [",".join(LABELS_HEADER)]
    session = 0
    for s in range(1, subjects + 1):
        subject = f"S{s:03d}"
        for name in classes:
            session += 1
            clip = synthetic_frames(name, num_frames, size, rng)
            if frames:
                write_frame_folder(root / "faces" / subject / str(session), clip)
            if videos:
                write_video(root / subject / f"{session}.avi", clip)
            lines.append(f"{session},{subject},{name}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def make_miniature_mmi_sessions(
    root: str | Path,
    subjects: int = 10,
    classes: Sequence[str] = MMI_CLASS_NAMES,
    num_frames: int = 6,
    size: int = 40,
    frames: bool = False,
    no_emotion: int = 1,
    other_emotion: int = 0,
    seed: int = 0,
) -> Path:
    """Write a tiny MMI tree in the downloaded layout: ``Sessions/<n>/`` with ``S<sss>-<nnn>.avi`` (Motion-JPEG),
    ``session.xml`` (``<subject id=...>``, a video ``track`` with its ``annotation`` files), ``S<sss>-<nnn>.xml``
    (``<Metatag Name="Emotion" Value="1..6"/>``) and an empty ``-oao_aucs.xml``.

    Subjects ``1 ...`` (written as ``id`` in session.xml) record one session per class in ``classes``; then
    ``no_emotion`` AU-only sessions (no Emotion tag) and ``other_emotion`` sessions with Emotion ``7`` per subject
    are added (all with videos). ``frames`` also writes fertrain's face folders ``faces/<n>/<name>/00000.jpg ...``.
    Session numbers run ``1, 2, ...`` over subjects. The XML shape is *ours* where public material is silent (the
    subject element; module docstring).

    Raises:
        ValueError: an argument is out of range.
    """
    if subjects < 1 or num_frames < 1 or size < 8 or no_emotion < 0 or other_emotion < 0:
        raise ValueError(f"make_miniature_mmi_sessions needs subjects, num_frames >= 1, size >= 8 and counts >= 0; "
                         f"got {subjects}, {num_frames}, {size}, {no_emotion}, {other_emotion}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    code_of = {name: k for k, name in MMI_EMOTION_CODES.items()}
    session = 0
    for subj in range(1, subjects + 1):
        plan = [(c, code_of[c]) for c in classes] + [(None, None)] * no_emotion + [(classes[0], 7)] * other_emotion
        for class_name, code in plan:
            session += 1
            folder = root / "Sessions" / str(session)
            name = f"S{subj:03d}-{session:03d}"
            clip = synthetic_frames(class_name or "Neutral", num_frames, size, rng)
            write_video(folder / f"{name}.avi", clip)
            if frames:
                write_frame_folder(root / "faces" / str(session) / name, clip)
            (folder / "session.xml").write_text(
                '<?xml version="1.0" encoding="utf-8"?>\n'
                f'<session sessionId="{session}" mediaFile="{name}.avi">\n'
                f'  <subject id="{subj}" />\n'
                f'  <track id="0" type="Video" view="0" filename="{name}.avi">\n'
                f'    <annotation id="1" type="Metadata" filename="{name}.xml" />\n'
                f'    <annotation id="2" type="FACS" filename="{name}-oao_aucs.xml" />\n'
                "  </track>\n</session>\n")
            tags = f'  <Metatag Name="Emotion" Value="{code}" />\n' if code is not None else ""
            (folder / f"{name}.xml").write_text(f'<?xml version="1.0"?>\n<Metadata>\n{tags}'
                                                 '  <Metatag Name="Gender" Value="Female" />\n</Metadata>\n')
            (folder / f"{name}-oao_aucs.xml").write_text('<?xml version="1.0"?>\n<ActionUnits />\n')
    return root
