"""What the command-line tools share: one-line errors, config lookup, ``--list`` and ``--show``.

A config or data mistake (a typo'd key, a missing split file, a corrupt image) is the user's to
fix, so the tools print one line that names the culprit and how to fix it, instead of a
20-50-line traceback whose last line is the message; ``--debug`` gives the full traceback.

``run_absl(main, configs_dir)`` runs an absl ``main`` (launch.py) that way. Before absl parses
the flags it also answers ``--list`` (every method config) and resolves ``--config
configs/X.py`` against the installed config files when the current folder has none, so the
installed ``biomedjax-launch`` works from any folder.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import os
import pathlib
import re
import sys
import tokenize

from biomedjax.train import distributed, lifecycle

DEBUG_FLAG = "--debug"

# Exception types whose message is written for the user (it names the file/key/value at fault).
# Anything else is also shown in one line, but as "<Type>: message" with the --debug hint first.
_HINTS = {
    "BadImageError": "fix or remove the image(s), or pass --config.data.skip_bad_images=True",
    "SplitError": "fix the split file at the line shown",
    "ImageRootError": "",
    "CheckpointError": "",
    "ResultsError": "",
    "ConversionError": "",
}
# predict/export have none of the launcher's options (--show, --config.data.*): their own hints.
PREDICT_HINTS = {
    "BadImageError": "fix or remove the image, or leave it out of --images",
    "SplitError": "fix the split file at the line shown",
    "ImageRootError": "",
    "CheckpointError": "",
    "ResultsError": "",
    "ConversionError": "",
}


def _root_message(e: BaseException) -> str:
  """The message text of ``e``, unwrapping exceptions wrapped as arguments (ml_collections wraps
  a KeyError in an AttributeError, whose ``str`` is then the escaped repr of the KeyError)."""
  while len(e.args) == 1 and isinstance(e.args[0], BaseException):
    e = e.args[0]
  if len(e.args) == 1 and isinstance(e.args[0], str):
    return e.args[0]  # a KeyError's str() is its repr; the argument is the text
  return str(e)


def _config_key_flag(message: str, argv) -> str | None:
  """The ``--config.a.b`` flag of argv whose last key the message quotes, if any."""
  m = re.match(r"\s*'([^']+)'", message)
  if not m:
    return None
  for a in argv:
    flag = a.split("=", 1)[0]
    if flag.startswith("--config.") and flag.rsplit(".", 1)[-1] == m.group(1):
      return flag
  return None


def one_line(e: BaseException, argv=(), hints=None) -> str:
  """``error: <culprit and fix>`` on one line (newlines in the message become '; ').
  ``hints``: the tool's hints per exception type (default: the launcher's)."""
  launcher = hints is None
  hints = _HINTS if hints is None else hints
  name = type(e).__name__
  message = _root_message(e)
  flag = _config_key_flag(message, argv) if isinstance(e, (AttributeError, KeyError)) else None
  if flag:
    key = flag.rsplit(".", 1)[-1]
    rest = message.split("\n", 1)[1].strip() if "\n" in message else ""
    message = (f"{flag}: the config has no key {key!r}" + (f"; {rest}" if rest else "")
               + " (python launch.py --config FILE --show lists every key)")
  elif isinstance(e, FileNotFoundError) and e.filename:
    message = f"{e.filename}: no such file or directory" + (
        " (check the path in the config; --show prints every path option)" if launcher else "")
  elif name not in hints and not isinstance(e, (ValueError, KeyError, FileNotFoundError)):
    message = f"{name}: {message}"
  text = "; ".join(line.strip() for line in message.strip().splitlines() if line.strip())
  hint = hints.get(name)
  if hint and hint not in text and not (launcher and "skip_bad_images" in text):
    text += f" ({hint})"
  return f"error: {text}  [{DEBUG_FLAG} shows the traceback]"


# A Ctrl-C outside the training steps (preparing, evaluating, reporting): only the loop saves on
# a signal, and what was written before stays (a run resumes from its newest checkpoint).
AFTER_STEPS = ("stopped outside the training steps; nothing already written was removed: run the "
               "same command again to finish (a run resumes from its newest checkpoint)")


def run_guarded(fn, argv=None, hints=None) -> int:
  """Calls ``fn()``; an exception becomes one line on stderr and exit status 2, unless
  ``--debug`` is in argv (then it propagates with its traceback). ``hints``: see ``one_line``."""
  argv = sys.argv if argv is None else argv
  try:
    result = fn()
  except KeyboardInterrupt as e:  # lifecycle.Interrupted: a checkpoint was saved first
    print(f"interrupted: {str(e) or AFTER_STEPS}", file=sys.stderr)
    if isinstance(e, lifecycle.Interrupted):  # an agreed stop: every process is here
      distributed.leave_together()
    logging.shutdown()
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(130)  # at once: the input pipeline's prefetch threads are not waited for
  except SystemExit:
    raise
  except Exception as e:  # noqa: BLE001  (each one becomes the user's one line)
    if DEBUG_FLAG in argv:
      raise
    logging.shutdown()
    print(one_line(e, argv, hints), file=sys.stderr)
    return 2
  return result if isinstance(result, int) else 0


# ---------------------------------------------------------------------------------------------
# Config files: where they are, --list and --show.


def resolve_config_arg(argv: list[str], configs_dir: pathlib.Path) -> list[str]:
  """``--config configs/X.py[:args]`` -> the installed file when ./configs/X.py does not exist."""
  out = list(argv)
  for i, a in enumerate(out):
    if a == "--config" and i + 1 < len(out):
      j, prefix, value = i + 1, "", out[i + 1]
    elif a.startswith("--config="):
      j, prefix, value = i, "--config=", a[len("--config="):]
    else:
      continue
    file, sep, args = value.partition(":")
    candidate = configs_dir / pathlib.Path(file).name
    if not pathlib.Path(file).exists() and candidate.is_file():
      out[j] = f"{prefix}{candidate}{sep}{args}"
  return out


def config_summary(path: pathlib.Path) -> tuple[str, str]:
  """(method name(s), first docstring line) of a config file, read without running it."""
  tree = ast.parse(path.read_text())
  doc = (ast.get_docstring(tree) or "").strip().split("\n")[0]
  names = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "prompt_method":
      names += [a.value for a in node.args[:1] if isinstance(a, ast.Constant)]
    if isinstance(node, ast.keyword) and node.arg == "name" and isinstance(node.value,
                                                                           ast.Constant):
      names.append(node.value.value)
  return ", ".join(dict.fromkeys(n for n in names if isinstance(n, str) and n)), doc


def list_configs(configs_dir: pathlib.Path) -> str:
  """One line per method config: file, method name(s), what it is."""
  from biomedjax.methods import METHODS
  rows = []
  for path in sorted(configs_dir.glob("*.py")):
    # base/common and the shared protocol modules (_harness, _vr) are not runnable configs
    if path.name.startswith("_") or path.name in ("base.py", "common.py"):
      continue
    names, doc = config_summary(path)
    if not names and path.stem in METHODS:  # configs/<method>.py built by base.method_config
      names = path.stem
    rows.append((f"configs/{path.name}", names or "-", doc))
  w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
  lines = [f"{'config':<{w0}}  {'method':<{w1}}  what"]
  lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
  return "\n".join(lines)


def option_sources(method: str) -> list[pathlib.Path]:
  """The files that declare a method's options dataclass and its dataclass bases, bases first
  (so ``field_comments`` lets a subclass's comment win); empty for an unknown method."""
  import dataclasses
  import inspect
  import sys
  from biomedjax.methods import METHODS
  if method not in METHODS:
    return []
  options = getattr(sys.modules[METHODS[method].__module__], "Options", None)
  if options is None:
    return []
  classes = [c for c in reversed(options.__mro__) if dataclasses.is_dataclass(c)]
  return list(dict.fromkeys(pathlib.Path(inspect.getsourcefile(c)) for c in classes))


def field_comments(*paths: pathlib.Path) -> dict[str, str]:
  """``name -> trailing comment`` for ``name=value,  # comment`` and ``c.a.name = v  # comment``
  lines of the given config sources (later files win): the meaning of each option, taken from
  where its default is written."""
  out = {}
  for path in paths:
    lines = path.read_text().splitlines()
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
      if tok.type == tokenize.COMMENT:
        comments[tok.start[0]] = tok.string.lstrip("#").strip()
    for n, text in comments.items():
      code = lines[n - 1].split("#", 1)[0]
      m = re.search(r"(?:^|[\s,(.])(\w+)\s*(?::[^=#]*)?=[^=]", code)
      if m and not code.strip().startswith("#"):
        out[m.group(1)] = text
  return out


def _flat(d, prefix=""):
  for k, v in d.items():
    if hasattr(v, "items"):
      yield from _flat(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}", v


def show_config(config, defaults, meanings: dict[str, str]) -> str:
  """Every key of ``config`` as ``key = value  (default X)  # meaning``; ``defaults`` is the
  config file without arguments or overrides; a ``*`` marks the values that differ from it."""
  base = dict(_flat(defaults))
  rows = []
  for key, value in _flat(config):
    default = base.get(key, "(no default)")
    mark = " " if default == value else "*"
    meaning = meanings.get(key.rsplit(".", 1)[-1], "")
    rows.append((f"{mark} {key} = {value!r}  (default {default!r})", meaning))
  width = min(72, max(len(r[0]) for r in rows))
  return "\n".join(f"{a:<{width}}  # {b}" if b else a for a, b in rows)


# ---------------------------------------------------------------------------------------------
# Logs and progress bars on one terminal.

# Log lines of libraries that are not the user's concern (orbax warns whenever a save waits for
# the previous one, which tiny epochs make routine).
_NOISE = ("Waiting for previous save",)


class _DropNoise(logging.Filter):
  def filter(self, record):
    return not str(record.msg).startswith(_NOISE)


def quiet_library_noise() -> None:
  """Drops the ``_NOISE`` lines from absl's logger (orbax logs through it)."""
  logger = logging.getLogger("absl")
  if not any(isinstance(f, _DropNoise) for f in logger.filters):
    logger.addFilter(_DropNoise())


class _ThroughTqdm:
  """A stream whose lines go through ``tqdm.write``: a bar on the same stream is cleared, the
  line printed, the bar redrawn below it, instead of the line being glued to the bar."""

  def __init__(self, stream):
    self.stream = stream

  def write(self, text):
    from tqdm import tqdm
    text = text.rstrip("\n")
    if text:
      tqdm.write(text, file=self.stream)

  def flush(self):
    self.stream.flush()

  def __getattr__(self, name):
    return getattr(self.stream, name)


def _console_handlers():
  """Stream handlers of the root logger, absl's included (it wraps a plain StreamHandler)."""
  for h in logging.root.handlers:
    inner = getattr(h, "python_handler", h)  # absl.logging.ABSLHandler
    if isinstance(inner, logging.StreamHandler):
      yield inner


@contextlib.contextmanager
def logs_above_progress_bars():
  """Within the block, console log lines are written through tqdm (restored afterwards)."""
  swapped = []
  for h in _console_handlers():
    if not isinstance(h.stream, _ThroughTqdm):
      swapped.append((h, h.stream))
      h.stream = _ThroughTqdm(h.stream)
  try:
    yield
  finally:
    for h, stream in swapped:
      h.stream = stream
