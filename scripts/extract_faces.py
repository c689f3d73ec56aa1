"""Face extraction CLI (thin wrapper of ``python -m fertrain.preprocess.faces``).

Example (from the repository root)::

    .venv/bin/python scripts/extract_faces.py --input ../shared/data/real --output .cache/faces --size 112

Writes ``<output>/<relative path without suffix>/00000.jpg ...`` (face frames only; file number = source frame
index), ``face_track.json`` in each frame folder, and ``<output>/face_report.csv``; prints a summary table.
See ``fertrain/preprocess/faces.py`` for the detector, the temporal rules and the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fertrain.preprocess.faces import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
