"""Helpers shared by every config file: the config-string parser, the sweep packer, dataset facts.

A config is selected as ``--config configs/coop.py:dataset=btmri,shots=16,seed=1``. The part after
the colon is one string; ``parse_arg`` turns it into typed values using the defaults a config file
declares, in the manner of big_vision's ``configs/common.py``:

  * ``key=value`` pairs separated by commas; the value is split at the first ``=`` only;
  * each value is converted to the type of its default (``int``, ``float``, ``str``, ``bool``);
    a default of ``None`` keeps the value as a string;
  * a bare ``key`` means ``key=True`` and is only allowed for bool keys (``runlocal``);
  * bools are strict: only ``True``/``False`` (any case) and ``1``/``0``; ``yes`` is an error,
    because a silently misread flag would change an experiment without anyone noticing;
  * an unknown or repeated key is an error that names it, so a typo never falls back to a default.

``arg(**kw)`` is the inverse used by ``sweep(add, arg)`` functions: it packs values into the one
config-string argument, and refuses values that could not be parsed back unchanged.

``DATASETS`` lists the dataset keys of ``biomedjax.data.catalog`` (class names and split files
live there, once); ``fewshot_grid`` is the datasets x K x seeds sweep every method config uses.
"""

from __future__ import annotations

import ml_collections

from biomedjax.data import catalog

_TRUE = ("true", "1")
_FALSE = ("false", "0")


def _to_bool(key: str, text: str) -> bool:
  if text.lower() in _TRUE:
    return True
  if text.lower() in _FALSE:
    return False
  raise ValueError(f"config arg {key!r}: {text!r} is not a bool (use True/False or 1/0)")


def _convert(key: str, text: str, default):
  """Converts one value to the type of its default; errors name the key and the text."""
  if isinstance(default, bool):  # Before int: bool is a subclass of int.
    return _to_bool(key, text)
  if default is None or isinstance(default, str):
    return text
  try:
    return type(default)(text)
  except ValueError:
    raise ValueError(f"config arg {key!r}: cannot read {text!r} as "
                     f"{type(default).__name__} (default {default!r})") from None


def _split_items(arg: str) -> list[tuple[str, str | None]]:
  """'a=1,flag' -> [('a', '1'), ('flag', None)]; empty items (stray commas) are ignored."""
  items = []
  for item in arg.split(","):
    item = item.strip()
    if not item:
      continue
    key, sep, value = item.partition("=")
    items.append((key.strip(), value.strip() if sep else None))
  return items


def parse_arg(arg: str | None, **spec) -> ml_collections.ConfigDict:
  """Parses ``'key=value,flag'`` against ``spec`` (key -> typed default); returns a ConfigDict.

  Example: ``parse_arg('dataset=busi,shots=4,runlocal', dataset='btmri', shots=16,
  runlocal=False)`` gives ``dataset='busi', shots=4, runlocal=True``.
  """
  values = dict(spec)
  seen = set()
  for key, text in _split_items(arg or ""):
    if key not in spec:
      raise KeyError(f"unknown config arg {key!r} in {arg!r}; known: {sorted(spec)}")
    if key in seen:
      raise ValueError(f"config arg {key!r} given twice in {arg!r}")
    seen.add(key)
    if text is None:
      if not isinstance(spec[key], bool):
        raise ValueError(f"config arg {key!r} needs a value ({key}=...); only bool keys "
                         f"may be given bare")
      values[key] = True
    else:
      values[key] = _convert(key, text, spec[key])
  return ml_collections.ConfigDict(values)


def format_arg(**kw) -> str:
  """Packs values into a config string that ``parse_arg`` reads back unchanged."""
  parts = []
  for key, value in kw.items():
    text = str(value)
    if any(c in text for c in ",=") or text != text.strip():
      raise ValueError(f"config arg {key!r}={value!r} cannot be packed: it contains ',' or '=' "
                       f"or surrounding spaces")
    parts.append(f"{key}={text}")
  return ",".join(parts)


def arg(**kw) -> dict[str, str]:
  """For sweeps: ``add(lr=0.002, **arg(dataset='btmri', shots=16, seed=1))``.

  Returns ``{'arg': 'dataset=btmri,shots=16,seed=1'}``: the config-string argument of one run,
  as a keyword for the sweep's ``add`` callback (the launcher passes it to ``get_config``).
  """
  return {"arg": format_arg(**kw)}


# The dataset keys users type (``dataset=btmri``): the catalog's; classes live there.
DATASETS = tuple(catalog.DATASETS)
SHOTS = (1, 2, 4, 8, 16)
SEEDS = (1, 2, 3)


# Sweep commands may name the grid: ``datasets=btmri+busi,shots=1+4,seeds=1+2`` (the singular
# keys too: ``dataset=busi`` sweeps that one dataset). The key each one fills:
GRID_KEYS = {"dataset": "datasets", "datasets": "datasets", "shots": "shots", "seed": "seeds",
             "seeds": "seeds"}


def sweep_grid(arg: str | None) -> tuple[str, dict]:
  """Splits a sweep's config string into the rest and the grid it names.

  ``'datasets=btmri+busi,shots=1+4,model=m'`` -> ``('model=m', {'datasets': ('btmri', 'busi'),
  'shots': (1, 4)})``. Axes the string does not name are absent (the sweep's defaults apply);
  the rest goes to every point unchanged.
  """
  rest, grid = [], {}
  for key, text in _split_items(arg or ""):
    if key not in GRID_KEYS or text is None:
      rest.append(key if text is None else f"{key}={text}")
      continue
    axis = GRID_KEYS[key]
    if axis in grid:
      raise ValueError(f"sweep axis {axis!r} given twice in {arg!r}")
    values = [v.strip() for v in text.split("+") if v.strip()]
    if not values:
      raise ValueError(f"config arg {key!r} in {arg!r} names no value")
    if axis != "datasets":
      values = [_convert(key, v, 0) for v in values]
    grid[axis] = tuple(values)
  return ",".join(rest), grid


def dataset_row(table: dict, dataset: str, default, what: str):
  """(value, note) of a per-dataset settings table: ``table[dataset]``, else the generic
  ``default``. The note (``config.dataset_settings``: logged, in results.md) says which applied
  and why, so a run on own data never silently takes a benchmark dataset's settings."""
  if dataset in table:
    return table[dataset], f"{what}: the table's row for dataset {dataset!r}: {table[dataset]}"
  return default, (f"{what}: generic defaults {default} (dataset {dataset!r} is not in the "
                   f"table, which covers {', '.join(sorted(table))})")


def fewshot_grid(add, datasets=DATASETS, shots=SHOTS, seeds=SEEDS, **fixed) -> None:
  """Adds the datasets x K x seeds grid of the few-shot benchmark (``fixed`` args appended)."""
  for dataset in datasets:
    for k in shots:
      for seed in seeds:
        add(**arg(dataset=dataset, shots=k, seed=seed, **fixed))
