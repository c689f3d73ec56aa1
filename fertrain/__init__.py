"""fertrain: config-driven training and evaluation for facial expression recognition (FER).

Entry points: ``python -m fertrain`` (train/test, Hydra app, see ``conf/train.yaml``) and
``python -m fertrain.predict`` (sliding-window inference over a whole video).
"""

__version__ = "0.1.0"

from fertrain.report.console import silence_uninformative_output as _silence

_silence()  # third-party messages that say nothing about the run (each one's reason: fertrain/report/console.py)
