"""Running a sweep's points: one point, or all of them in the mode asked (see the package doc).

Every process of a multi-process sweep runs the same loop over the same points, and each point's
run is itself a multi-process run: the processes skip the same finished points, since a point's
results.json only appears at the end of its run.
"""

from __future__ import annotations

import collections
import logging
import pathlib
import shlex
import subprocess

log = logging.getLogger("biomedjax")


def run_point(config, workdir) -> dict:
  """One point's run in this process (``train_and_evaluate``): -> its results."""
  from biomedjax.train import loop
  return loop.train_and_evaluate(config, workdir)


def run_fit_packs(points) -> list:
  """The unfinished points of a fit-stage method that differ only in their seed and are
  ``fit_pack.packable`` run here as one computation each (``fit_pack.run``); -> the others."""
  import jax
  from biomedjax.train import fit_pack, workdir_lock
  groups = collections.defaultdict(list)
  for p in points:
    groups[fit_pack.setting_key(p.config)].append(p)
  rest = []
  for group in groups.values():
    if not fit_pack.packable([p.config for p in group]):
      rest += group
      continue
    if jax.process_count() > 1:
      raise ValueError("--sweep=packed fits the seeds of a fit-stage method in one process; "
                       "drop the multi-process settings or use --sweep=run")
    log.info("packed: %s", ", ".join(str(p.workdir) for p in group))
    with workdir_lock.hold(*(p.workdir for p in group)):  # one run per workdir
      fit_pack.run([p.config for p in group], [p.workdir for p in group])
  return rest


def run_sweep(mode: str, points, root, process_id: int) -> None:
  """``mode``: "print" the unfinished points' commands, "run" each in its own process, or
  "packed" (in this process); then process 0 writes the sweep's report (run, packed)."""
  from biomedjax.train import run as run_lib
  todo = run_lib.unfinished(points)
  if mode == "packed":
    from biomedjax.train import packed
    packed.run_sweep([packed.Point(p.config, p.workdir) for p in run_fit_packs(todo)], root)
  else:
    for i, p in enumerate(todo):
      if mode == "print":
        print(shlex.join(p.command))
      else:
        log.info("run %d of %d: %s", i + 1, len(todo), shlex.join(p.command))
        subprocess.run(p.command, check=True)
  if mode in ("run", "packed") and process_id == 0:
    from biomedjax.evaluation import report
    print(report.make_report([str(root)], pathlib.Path(root) / "report"))
