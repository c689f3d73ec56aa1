"""The data fingerprint: one hash that says which samples a run (or a dataset check) saw.

``data_fingerprint`` hashes the sorted sample list of every split: per sample its split, ``video_id``, label,
start frame and frame count (frames), and the path relative to the dataset root where one is given. Two runs
with the same fingerprint trained and tested on the same labelled samples with the same frame counts; a missing
clip, a changed label, a re-extracted folder with another frame count or another fold gives another fingerprint.
Pixels are not hashed (a dataset check, ``fertrain.data.check``, decodes them); the choice of fields is *ours*.

Written by training into ``run.json`` (``data.fingerprint``) and printed by the dataset check, so the two can be
compared: ``fertrain.table`` flags folds of one experiment whose fingerprints disagree.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from fertrain.data.records import ClipRecord

FINGERPRINT_VERSION = 1


def _sample_key(split: str, rec: ClipRecord, root: Path | None) -> tuple:
    path = Path(rec.path)
    if root is not None:
        try:
            path = path.resolve().relative_to(Path(root).resolve())
        except ValueError:  # outside the root (e.g. a shipped asset): keep the name only
            path = Path(path.name)
    else:
        path = Path(path.name)
    return (split, str(rec.video_id), int(rec.label), int(rec.start_frame), int(rec.num_frames), path.as_posix())


def data_fingerprint(records: Mapping[str, Sequence[ClipRecord]], root: str | Path | None = None) -> dict[str, Any]:
    """Fingerprint of the samples of every split.

    Args:
        records: ``{split: records}`` as the datamodule uses them (after any skipped samples were dropped).
        root: the dataset root; paths are hashed relative to it (so the same tree in another place gives the same
            fingerprint). None: only file names are hashed.

    Returns:
        ``{"fingerprint": "sha256:<hex>", "version": 1, "splits": {split: {"samples": n, "frames": total,
        "per_class": {label: n}}}}``.
    """
    h = hashlib.sha256()
    h.update(f"fertrain-data-fingerprint-v{FINGERPRINT_VERSION}\n".encode())
    splits: dict[str, Any] = {}
    for split in sorted(records):
        recs = records[split]
        keys = sorted(_sample_key(split, r, Path(root) if root else None) for r in recs)
        for key in keys:
            h.update(json.dumps(key).encode())
            h.update(b"\n")
        per_class: dict[str, int] = {}
        for r in recs:
            per_class[str(r.label)] = per_class.get(str(r.label), 0) + 1
        splits[split] = {"samples": len(recs), "frames": int(sum(r.num_frames for r in recs)),
                         "per_class": dict(sorted(per_class.items(), key=lambda kv: int(kv[0])))}
    return {"fingerprint": "sha256:" + h.hexdigest(), "version": FINGERPRINT_VERSION, "splits": splits}
