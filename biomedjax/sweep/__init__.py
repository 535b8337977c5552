"""Sweeps beyond one config file's grid: paper recipes (``recipes``), the plan before a sweep
runs (``plan``) and job-array execution (``array``)."""
