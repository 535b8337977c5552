"""A sweep command -> its points: (name, config, workdir, command), configs built directly.

A config file's ``sweep(add, arg)`` names each point by a config string (``dataset=btmri,
shots=16,seed=1``); the command's own config-string arguments are merged under it (the point
wins), then the command's ``--config.*`` overrides (their values as the command's own config
parsed them) and the ``--grid`` values of the point's combination (``KEY=V1+V2``, each value
read as the type of the field it sets) are applied, and a grid point gets ``variant``, its label
in the report.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import itertools
import pathlib
import sys


@dataclasses.dataclass(frozen=True)
class Command:
  """What a sweep command says: the config file and its argument, the ``--config.*`` overrides
  as given (argv form) and as parsed (``resolved``: the command's own config), the ``--grid``
  flags, the sweep's root workdir, and what a point's command line repeats."""
  file: str
  arg: str
  overrides: tuple[str, ...]
  resolved: object
  grid: tuple[str, ...]
  root: pathlib.Path
  launcher: str
  extra_flags: tuple[str, ...] = ()  # e.g. the multi-process flags, for each point's command


@dataclasses.dataclass(frozen=True)
class Point:
  name: str
  config: object
  workdir: pathlib.Path
  command: tuple[str, ...]


def config_overrides(args: list[str]) -> list[str]:
  """A command line's ``--config.x=y`` / ``--config.x y`` flags, as ``--config.x=y``."""
  out = []
  for i, a in enumerate(args):
    if a.startswith("--config."):
      out.append(a if "=" in a or i + 1 == len(args) else f"{a}={args[i + 1]}")
  return out


def load_module(file: str, name: str = "sweep_config"):
  spec = importlib.util.spec_from_file_location(name, file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def merge_args(base: str, point: str) -> str:
  """The command's config-string arguments with a sweep point's on top (point wins); the grid
  the command named (``datasets=a+b,shots=1+4``) is in the points already."""
  from configs import common
  base = common.sweep_grid(base)[0]
  items = {i.partition("=")[0]: i for i in base.split(",") if i}  # "model=" keeps its "="
  items.update((i.partition("=")[0], i) for i in point.split(",") if i)
  return ",".join(items.values())


def own_data_arg(base_arg: str, overrides, dataset: str) -> str:
  """With own data (a split file or prepared folder on the command) and no dataset named, the
  sweep covers that one data set only: never benchmark runs on data the user did not name."""
  from configs import common
  own = any(o.startswith(("--config.data.split_file", "--config.data.prepared"))
            for o in overrides)
  if own and "datasets" not in common.sweep_grid(base_arg)[1]:
    return ",".join(a for a in (base_arg, f"dataset={dataset}") if a)
  return base_arg


def several_runs(arg: str, grid) -> list[str]:
  """The axes of a config string and ``--grid`` flags that name more than one run."""
  from configs import common
  several = [k for k, v in common.sweep_grid(arg)[1].items() if len(v) > 1]
  return several + [g.partition("=")[0] for g in grid]


def grid_combinations(grid) -> list[tuple[tuple[str, str], ...]]:
  """The --grid flags' product: [(("method.w", "1.0"), ("optim.lr", "0.002")), ...]."""
  axes = []
  for g in grid:
    key, _, values = g.partition("=")
    vals = [v.strip() for v in values.split("+") if v.strip()]
    if not key.strip() or not vals:
      raise ValueError(f"--grid={g!r}: use KEY=V1+V2 (e.g. method.lambda_sccm=0.25+0.5)")
    if key.strip().removeprefix("config.") in (k for k, _ in axes):
      raise ValueError(f"--grid key {key!r} given twice")
    axes.append((key.strip().removeprefix("config."), vals))
  return [tuple(zip([k for k, _ in axes], combo))
          for combo in itertools.product(*(v for _, v in axes))]


def _get(config, key: str):
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def _set(config, key: str, value) -> None:
  *parents, leaf = key.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value


def typed(current, text: str):
  """A grid value ``text`` as the type of the field it replaces (as ``--config.k=text``)."""
  if isinstance(current, bool):
    if text.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"--grid value {text!r}: the field is a bool (true/false)")
    return text.lower() in ("true", "1")
  if isinstance(current, (int, float)):
    return type(current)(text) if isinstance(current, float) or "." not in text else float(text)
  if isinstance(current, str):
    return text
  return ast.literal_eval(text)


def point_config(module, arg: str, command: Command, combo):
  """One point's config: the file's for ``arg``, the command's overrides, the grid values."""
  config = module.get_config(arg)
  for flag in command.overrides:
    key = flag.removeprefix("--config.").partition("=")[0]
    _set(config, key, _get(command.resolved, key))
  for key, text in combo:
    _set(config, key, typed(_get(config, key), text))
  if combo:  # a grid point's label in the report (its rows would otherwise collide)
    config.variant = ",".join(f"{k}={v}" for k, v in combo)
  config.lock()
  return config


def enumerate_points(command: Command) -> list[Point]:
  """Every point of the sweep ``command``, in the config file's order then the grid's."""
  module = load_module(command.file)
  names = []
  sweep_arg = own_data_arg(command.arg, command.overrides, command.resolved.data.dataset)
  module.sweep(lambda **kw: names.append(kw["arg"]), sweep_arg or None)
  out = []
  for point in names:
    arg = merge_args(command.arg, point)
    for combo in grid_combinations(command.grid):
      name = "_".join([point.replace(",", "_").replace("=", "-"),
                       *(f"{k}-{v}" for k, v in combo)]).strip("_")
      workdir = pathlib.Path(command.root) / name
      variant = ([f"--config.variant={','.join(f'{k}={v}' for k, v in combo)}"]
                 if combo else [])
      cmd = (sys.executable, command.launcher, f"--config={command.file}:{arg}",
             *command.overrides, *(f"--config.{k}={v}" for k, v in combo), *variant,
             f"--workdir={workdir}", *command.extra_flags)
      out.append(Point(name, point_config(module, arg, command, combo), workdir, cmd))
  return out


def named_configs(command: Command) -> list[tuple[str, object]]:
  """``(name, config)`` of every point of the sweep ``command``."""
  return [(p.name, p.config) for p in enumerate_points(command)]
