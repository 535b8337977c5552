"""Sweeps: a config file's grid of runs, enumerated as config objects and run point by point.

* ``points.enumerate_points(command) -> [Point]``: every point of a sweep command as its name,
  locked config (the config file's ``get_config`` for the point's arguments, with the command's
  ``--config.*`` overrides and ``--grid`` values applied, no argv round trip), workdir and the
  launch command that runs it alone (``--sweep=print`` prints those).
* ``execute.run_point(config, workdir)``: one point's run; ``execute.run_sweep``: a sweep's
  points in the mode asked (``print``, ``run``: each point in its own process, ``packed``:
  points sharing a stream as one program and fitted seeds as one computation), finished points
  skipped by the one rule (``biomedjax.train.run.finished``), then the sweep's report.
* Beyond one config file's grid: paper recipes (``recipes``, one config per published table
  under ``configs/paper/``), the plan before a sweep runs (``plan``) and job-array execution
  (``array``: ``--sweep=count`` / ``--sweep=array --index=I``).
"""
