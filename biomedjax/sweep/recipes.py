"""Paper recipes: a published table as a sweep whose points are exactly the table's runs.

A recipe (``configs/paper/<table>.py``) lists ``Run``s: the config-string values of one run
(``method=coop,dataset=btmri,shots=16,seed=1``), the published cell it counts toward, and, when
biomedjax cannot run it yet (a backbone family or dataset not supported), why. Its config file
is a dispatcher: ``get_config(arg)`` builds the config of ``configs/<method>.py`` for the point
(each method's reference protocol, per-dataset values included) and applies the table's own
settings (e.g. the BioMedVR table's CLIP ViT-B/16 for the CoOp family). ``sweep`` adds the
runnable points only; ``unrunnable`` names the others, so ``--sweep=plan`` lists them: a
published cell is never silently dropped.

The command narrows a recipe like any sweep: ``methods=coop+biomedcoop``, ``datasets=btmri+busi``,
``shots=1+16``, ``seeds=1`` (``configs/common.py: sweep_grid``).
"""

from __future__ import annotations

import dataclasses
import importlib

from configs import base, common

# Config-string keys a recipe point or command may carry. The method config gets RUN_ARGS plus
# the extras its file declares (EXTRA_ARGS); the rest are read here.
RECIPE_ARGS = dict(method="", prompts="", attributes="", backbone="", objective="", mode="",
                   methods="")
EXTRA_ARGS = {"biomedcoop": ("prompts",), "calibprompt": ("backbone",), "iuxray": ("mode",)}


@dataclasses.dataclass(frozen=True)
class Run:
  arg: tuple          # ((key, value), ...): the point's config-string values
  cell: tuple         # the published cell it counts toward (the table's key columns)
  blocked: str = ""   # why it cannot run yet; "" = runnable

  @property
  def values(self) -> dict:
    return dict(self.arg)

  @property
  def point(self) -> str:
    return common.format_arg(**self.values)


def run(cell, blocked: str = "", **arg) -> Run:
  return Run(tuple(arg.items()), tuple(cell), blocked)


def narrowed(runs: list[Run], arg: str | None) -> list[Run]:
  """The runs the command names: ``methods=a+b`` and the grid axes (datasets, shots, seeds)."""
  rest, grid = common.sweep_grid(arg)
  methods = common.parse_arg(rest, **{**base.RUN_ARGS, **RECIPE_ARGS}).methods
  wanted = {"method": tuple(m for m in methods.split("+") if m) if methods else None,
            "dataset": grid.get("datasets"), "shots": grid.get("shots"),
            "seed": grid.get("seeds")}
  out = []
  for r in runs:
    v = r.values
    if all(allowed is None or k not in v or v[k] in allowed for k, allowed in wanted.items()):
      out.append(r)
  return out


def sweep(runs: list[Run], add, arg=None) -> None:
  for r in narrowed(runs, arg):
    if not r.blocked:
      add(arg=r.point)


def unrunnable(runs: list[Run], arg=None) -> list[tuple[str, str]]:
  """(point, why) of each named run biomedjax cannot run yet."""
  return [(r.point, r.blocked) for r in narrowed(runs, arg) if r.blocked]


def method_config(arg: str | None, runs: list[Run], table: str = ""):
  """The point's config: ``configs/<method>.py`` built from the point's run arguments, and the
  parsed recipe arguments (for the recipe's own settings).

  ``config.paper_table`` names the published table (config.json keeps it: the report compares
  the runs with that table without being told, ``biomedjax/published/compare.py: detect``).
  Without ``method=`` (the command's own config, before it is split into points) it is the
  config of the first runnable point the command names, marked ``run_sweep`` and ``pack``: the
  recipe is a sweep, and run without ``--sweep`` it runs all its points as ``--sweep=packed``.
  """
  a = base.parse(arg, **RECIPE_ARGS)
  if not a.method:
    first = next((r for r in narrowed(runs, arg) if not r.blocked), None)
    if first is None:
      raise ValueError(f"the recipe names no runnable point for {arg!r}")
    rest = dict(common.parse_arg(common.sweep_grid(arg)[0], **base.RUN_ARGS, **RECIPE_ARGS))
    given = {k for k, _ in common._split_items(common.sweep_grid(arg)[0])}
    point = {**{k: rest[k] for k in given}, **first.values}
    c, a = method_config(common.format_arg(**point), runs, table)
    c.run_sweep = True
    c.pack = True  # run without --sweep: --sweep=packed (what packs, packs; the rest one by one)
    return c, a
  extra = EXTRA_ARGS.get(a.method, ())
  keys = (*base.RUN_ARGS, *extra)
  module = importlib.import_module(f"configs.{a.method}")
  c = module.get_config(common.format_arg(**{k: a[k] for k in keys if k in a}))
  c.paper_table = table
  return c, a


def entry_points(table: str, runs, adjust=None):
  """``get_config``, ``sweep`` and ``unrunnable`` of a recipe config file whose runs are
  ``runs()``; ``adjust(config, parsed_args)`` applies the table's own settings to each point."""

  def get_config(arg=None):
    c, a = method_config(arg, runs(), table)
    if adjust is not None:
      adjust(c, a)
    return c

  def sweep_fn(add, arg=None):
    sweep(runs(), add, arg)

  def unrunnable_fn(arg=None):
    return unrunnable(runs(), arg)

  return get_config, sweep_fn, unrunnable_fn
