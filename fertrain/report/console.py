"""What a run prints: third-party messages that tell the user nothing are silenced here, each for a stated reason,
by exact message and origin (never a blanket filter). :func:`silence_uninformative_output` is called once on
``import fertrain`` and imports nothing heavy (no torch, no Lightning). The model summary without its always-zero
FLOPs column is :class:`fertrain.report.model_summary.ModelSummary`.
"""

from __future__ import annotations

import logging
import warnings

_DONE = False


class _DropMessages(logging.Filter):
    """Drop log records whose message contains one of ``texts`` or ends with one of ``endings``."""

    def __init__(self, texts: tuple[str, ...], endings: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.texts, self.endings = texts, endings

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        msg = record.getMessage()
        return not (any(t in msg for t in self.texts) or msg.endswith(self.endings))


def silence_uninformative_output() -> None:
    """Silence, at their source, the messages that every fertrain run would print and that carry no information
    about the run (idempotent):

    - Lightning >= 2.6 logs an advertisement ("💡 Tip: ... try installing litlogger") from ``Trainer(logger=...)``
      whenever no ``LitLogger`` is used, i.e. on every fertrain run and every ``trainer.test``: dropped from
      Lightning's rank-zero logger by its text.
    - fertrain's tasks replace Lightning's model summary by :class:`fertrain.report.model_summary.ModelSummary`
      (no always-zero FLOPs column) through ``configure_callbacks``; Lightning then announces "The following
      callbacks returned in `LightningModule.configure_callbacks` will override existing callbacks passed to
      Trainer: ModelSummary" on every fit and test: dropped when that summary is the only override.
    - torch 2.10+ deprecates ``torch.utils._pytree.LeafSpec``; Lightning's own ``pytorch_lightning/utilities/
      _pytree.py`` still builds one at every ``fit``/``test`` (a ``FutureWarning`` about Lightning's code, that the
      user can neither act on nor avoid; printed three times per run): ignored for that module only.
    """
    global _DONE
    if _DONE:
        return
    _DONE = True
    noise = _DropMessages(
        texts=("try installing [litlogger]",),
        endings=tuple(f"will override existing callbacks passed to Trainer: {name}"
                      for name in ("ModelSummary", "RichModelSummary")))
    # rank_zero_info's logger is re-pointed by whichever Lightning package is imported last: filter both
    for name in ("lightning_fabric.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
        logging.getLogger(name).addFilter(noise)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"pytorch_lightning\.utilities\._pytree")
