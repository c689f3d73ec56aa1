"""Benchmarks and end-to-end checks: figures a researcher reads before trusting a setup (not tests: they print
Markdown tables and ``met`` / ``NOT met`` lines; the figures depend on the machine and its load, printed with them).

Each module runs as ``python -m fertrain.bench.<name>`` (``--help`` for its options), from an installed wheel or a
checkout (where ``scripts/<old name>.py`` calls the same ``main``):

- :mod:`~fertrain.bench.data` (``fertrain-bench-data``, ``make bench-data``): input pipeline, clips/s and CPU
  ms/clip of fertrain's video and frame-folder loaders against the decode limit and a naive loader; worker memory.
- :mod:`~fertrain.bench.train` (``fertrain-bench-train``, ``make bench-train``): training-step ms and peak memory of
  the video models, MSCM against its backbone, growth with clip length and size, checkpoint size; GPU options.
- :mod:`~fertrain.bench.check` (``fertrain-bench-check``): the dataset check (``python -m fertrain.data.check``)
  against plain JPEG decoding of the same files.
- :mod:`~fertrain.bench.faces` (``fertrain-bench-faces``): face detectors side by side and the whole face
  extraction on real videos with labelled no-face spans (``--videos``).
- :mod:`~fertrain.bench.gpu_check` (``fertrain-gpu-check``): one table of what fertrain does on a GPU machine
  (step time per precision, data streaming, GPU JPEG decoding, DDP); ``--smoke`` runs every path on the CPU.
- :mod:`~fertrain.bench.model_card` (``fertrain-model-card``, ``make model-card``): parameters, GFLOPs, CPU train
  time of every model and the weights each experiment expects.
- :mod:`~fertrain.bench.synthetic_motion`: the video models on ``synthetic_motion`` (motion-only classes): which
  ones see temporal order.
- :mod:`~fertrain.bench.synthetic_spotting`: FESNet and the training-free LBP baseline on ``synthetic_spotting``.

Shared helpers (memory from ``/proc``, load line, Markdown tables, where generated and reference data live) are in
:mod:`~fertrain.bench.common`.
"""
