"""The launcher's command, checked before absl parses it: one line per mistake, nothing written.

absl's config flags report a missing config file as "Configuration is not available because of
an earlier failure to load", a bad config-string argument as a multi-line FATAL with a
traceback, and ``--config.optim.epochs=ten`` as ``FATAL Flags parsing error`` (exit 1). Here the
config file is loaded and the overrides are type-checked first, so each of these becomes the
project's one line (``cli.run_guarded``) naming the culprit and the fix.

Own data: a split file (or prepared folder) on the command without a dataset in the config string
would run under the config file's default name (``btmri``), and the per-dataset settings tables
(BiomedCoOp's lambdas, KgCoOp's W, ...) follow that name. ``name_own_data`` puts the dataset
into the config string instead: ``--config.data.dataset`` when given, else the split file's stem
(the prepared folder's name), so the run is named for its data: the generic defaults for a name
outside the catalog (``knee.json``), that data set's row for a catalog name (``busi.json``); the
log and results.md say which.
"""

from __future__ import annotations

import difflib
import importlib.util
import pathlib

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


class CommandError(ValueError):
  """A launcher command that cannot run; the message names the culprit and the fix."""


def config_files(configs_dir: pathlib.Path) -> list[str]:
  """The runnable config files, as ``configs/<name>.py``."""
  return [f"configs/{p.name}" for p in sorted(pathlib.Path(configs_dir).glob("*.py"))
          if not p.name.startswith("_") and p.name not in ("base.py", "common.py")]


def _config_value(argv: list[str]) -> tuple[int, str, str] | None:
  """(index, prefix, value) of the ``--config`` flag in argv, or None."""
  for i, a in enumerate(argv):
    if a == "--config" and i + 1 < len(argv):
      return i + 1, "", argv[i + 1]
    if a.startswith("--config="):
      return i, "--config=", a[len("--config="):]
  return None


def overrides(argv: list[str]) -> dict[str, str]:
  """``--config.a.b=v`` / ``--config.a.b v`` -> {"a.b": "v"}."""
  out = {}
  for i, a in enumerate(argv):
    if a.startswith("--config.") and a != "--config":
      key, sep, value = a[len("--config."):].partition("=")
      if not sep and i + 1 < len(argv):
        value = argv[i + 1]
      out[key] = value
  return out


def load_config(file: str, arg: str):
  """``get_config(arg)`` of a config file; a missing file names the closest one and --list."""
  path = pathlib.Path(file)
  if not path.is_file():
    names = config_files(path.parent if path.parent.is_dir() else pathlib.Path("configs"))
    close = difflib.get_close_matches(f"configs/{path.name}", names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    raise CommandError(f"--config={file}: no such config file; {hint}(python launch.py --list "
                       "prints every method's config file)")
  spec = importlib.util.spec_from_file_location("checked_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  try:
    return module.get_config(arg or None)
  except (KeyError, ValueError) as e:
    text = e.args[0] if len(e.args) == 1 and isinstance(e.args[0], str) else str(e)
    raise CommandError(f"--config={file}:{arg}: {text}") from None


def _lookup(config, key: str):
  node = config
  for part in key.split("."):
    if not hasattr(node, "keys") or part not in node:
      return None, False
    node = node[part]
  return node, True


def check_override_types(config, file: str, flags: dict[str, str]) -> None:
  """``--config.optim.epochs=ten``: refused in one line naming the key, its type and default.
  Unknown keys are left to the config flag parser (it suggests the closest key)."""
  for key, text in flags.items():
    default, found = _lookup(config, key)
    if not found or default is None or hasattr(default, "keys"):
      continue
    kind = type(default)
    ok = True
    if kind is bool:
      ok = text.lower() in _TRUE + _FALSE
    elif kind in (int, float):
      try:
        kind(text)
      except ValueError:
        ok = False
    if not ok:
      raise CommandError(f"--config.{key}={text}: {key} takes {'a' if kind is not int else 'an'} "
                         f"{kind.__name__} (default {default!r} in {file})")


def name_own_data(argv: list[str], config_file: str, arg: str, flags: dict[str, str]
                  ) -> tuple[list[str], str]:
  """With own data and no dataset in the config string: (argv, arg) with ``dataset=<name>``
  added to the config string (see the module docstring); unchanged otherwise, and for config
  files that take no ``dataset`` argument (the demo's synthetic data)."""
  from configs import common
  own = flags.get("data.split_file") or flags.get("data.prepared")
  if not own or "datasets" in common.sweep_grid(arg)[1]:
    return argv, arg
  name = flags.get("data.dataset") or pathlib.Path(own.rstrip("/")).stem
  new_arg = ",".join(a for a in (arg, f"dataset={name}") if a)
  try:
    load_config(config_file, new_arg)
  except CommandError:  # the file takes no dataset argument
    return argv, arg
  argv = list(argv)
  index, prefix, _ = _config_value(argv)
  argv[index] = f"{prefix}{config_file}:{new_arg}"
  return argv, new_arg


def check_command(argv: list[str]) -> list[str]:
  """argv checked (see the module docstring), with own data named; raises ``CommandError``."""
  found = _config_value(argv)
  if found is None:
    return argv
  file, _, arg = found[2].partition(":")
  config = load_config(file, arg)
  flags = overrides(argv)
  check_override_types(config, file, flags)
  argv, _ = name_own_data(argv, file, arg, flags)
  return argv
