"""``python -m fertrain.preprocess``: the face extraction CLI (:mod:`fertrain.preprocess.cli`)."""

import sys

from fertrain.preprocess.cli import main

sys.exit(main())
