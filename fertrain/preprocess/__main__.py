"""``python -m fertrain.preprocess``: the face extraction CLI (``fertrain.preprocess.faces.main``)."""

import sys

from fertrain.preprocess.faces import main

sys.exit(main())
