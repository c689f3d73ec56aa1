"""Dataset protocols: one module per dataset, each a :class:`~fertrain.data.records.RecordSource`.

Each module parses the official files of one dataset into :class:`~fertrain.data.records.ClipRecord` lists and
owns that dataset's label map (``class_names``) and split protocol; nothing else in fertrain knows them.

Video recognition:

- :mod:`fertrain.data.datasets.dfew` — DFEW (Jiang et al., ACM MM 2020), 7 classes, official 5-fold protocol;
  frame folders or the video-file variant.
- :mod:`fertrain.data.datasets.afew` — AFEW 7.0 (EmotiW), 7 classes, train/val (val reported as test).
- :mod:`fertrain.data.datasets.mmi` — MMI sequences, 6 classes, subject-independent 10-fold cross-validation.
- :mod:`fertrain.data.datasets.bu3dfe` — BU-3DFE static levels built into neutral -> level 1..4 sequences, 6 classes,
  subject-independent 10-fold cross-validation.
- :mod:`fertrain.data.datasets.common` — canonical class order, name mapping, deterministic subject folds.

Static images (a clip of length 1):

- :mod:`fertrain.data.datasets.rafdb` — RAF-DB basic, 7 classes, official train/test.
- :mod:`fertrain.data.datasets.affectnet` — AffectNet manual annotations, 7 or 8 classes, validation as test.
- :mod:`fertrain.data.datasets.ferplus` — FERPlus votes joined with FER2013 images, 8 classes, 4 label modes.

Spotting (long videos, per-frame neutral/macro/micro):

- :mod:`fertrain.data.datasets.casme2` — CAS(ME)^2 long videos, 22 subjects, LOSO.
- :mod:`fertrain.data.datasets.sammlv` — SAMM Long Videos, LOSO.
- :mod:`fertrain.data.datasets.synthetic_spotting` — generated long videos with macro/micro intervals.
- :mod:`fertrain.data.datasets.spotting_common` — what the annotated long-video datasets share (workbook rows to
  0-based intervals, offset rules, counted fixes).

Your own data:

- :mod:`fertrain.data.datasets.folder` — class folders (``data=folder``), seeded split grouped by subject.
- :mod:`fertrain.data.datasets.csvlist` — a CSV list (``data=csv``): path, label, split/fold/subject, segments.

Not benchmarks:

- :mod:`fertrain.data.datasets.demo` — the packaged real demo video (2 classes, split by time).
- :mod:`fertrain.data.datasets.synthetic_motion` — procedurally drawn faces whose 4 classes differ only in motion.

Configs name the classes directly (``_target_: fertrain.data.datasets.dfew.DFEW``); this package re-exports
nothing, so importing one dataset never imports the others.
"""
