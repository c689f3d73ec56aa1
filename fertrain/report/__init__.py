"""Outputs of runs: run records (``run.json``), tables and plots."""
