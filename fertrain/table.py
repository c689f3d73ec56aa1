"""``python -m fertrain.table``: kept name of :mod:`fertrain.report.table` (tables moved to ``fertrain/report/``).

Importing ``fertrain.table`` gives the :mod:`fertrain.report.table` module itself (same objects, so
``from fertrain.table import build_table`` and monkeypatching keep working).
"""

import sys

from fertrain.report import table as _table

if __name__ == "__main__":
    raise SystemExit(_table.main())
sys.modules[__name__] = _table
