"""OpenCV and forked DataLoader workers: importing fertrain's readers keeps OpenCV's thread pool from starting, so
a worker forked after OpenCV work in the main process does not hang (it did: a benchmark's 1-worker loader after
its 0-worker round, and a demo run after face extraction, hung in the worker's ``cv2.setNumThreads``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import os, sys
    import numpy as np
    import cv2
    if sys.argv[1] == "fertrain":
        import fertrain.data.readers  # noqa: F401  (sets OpenCV to one thread)
    img = np.random.default_rng(0).integers(0, 255, (2000, 2000, 3), dtype=np.uint8)
    for _ in range(3):  # large resizes: OpenCV's parallel_for, its pool starts unless single-threaded
        cv2.resize(img, (1000, 1000), interpolation=cv2.INTER_AREA)
    pid = os.fork()
    if pid == 0:  # what fertrain.data.transforms.seed_worker does first in a DataLoader worker
        cv2.setNumThreads(1)
        cv2.resize(img, (500, 500), interpolation=cv2.INTER_AREA)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("child status", status)
""")


@pytest.mark.timeout(120)
def test_worker_forked_after_opencv_work_in_the_main_process_does_not_hang() -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD, "fertrain"], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0 and "child status 0" in proc.stdout, proc.stderr[-3000:]
    assert int(subprocess.run([sys.executable, "-c", "import cv2, fertrain.data.readers; print(cv2.getNumThreads())"],
                              capture_output=True, text=True, timeout=60).stdout) == 1
