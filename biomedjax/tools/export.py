"""Export a trained run as one file: ``python -m biomedjax.tools.export --workdir RUN --out FILE``.

The file is the run's ``trained_state.safetensors``: the trainable pytree as tensors, and in its
metadata the method name and options, the class names, the prompt template, the eval image
size and the backbone (converted directory + manifest sha256, or the random preset). Load it
with ``biomedjax.tools.trained.TrainedClassifier.load(FILE)`` (README: "Using a trained method from
Python"), or predict with ``python -m biomedjax.tools.predict --state FILE``.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys

from biomedjax.tools import trained


def export(workdir, out) -> pathlib.Path:
  src = pathlib.Path(workdir) / trained.STATE_FILE
  trained.load(src)  # refuses anything that is not a complete state file
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_name(f".{out.name}.tmp")
  shutil.copyfile(src, tmp)
  tmp.chmod(0o644)
  tmp.replace(out)
  return out


def main(argv=None) -> int:
  from biomedjax.tools import cli as cli_lib
  ap = argparse.ArgumentParser(prog="python -m biomedjax.tools.export",
                               description=__doc__.split("\n")[0])
  ap.add_argument("--workdir", required=True, help="a finished run's workdir")
  ap.add_argument("--out", required=True, help="the .safetensors file to write")
  ap.add_argument("--debug", action="store_true", help="full tracebacks")
  args = ap.parse_args(argv)

  def run():
    out = export(args.workdir, args.out)
    _, meta = trained.load(out)
    print(f"wrote {out}: {meta['method']['name']}, {len(meta['classnames'])} classes, backbone "
          f"{meta['backbone']['label']}")
    return 0

  return cli_lib.run_guarded(run, sys.argv if argv is None else ["", *argv],
                             hints=cli_lib.PREDICT_HINTS)


def cli() -> None:
  """Console script ``biomedjax-export``."""
  sys.exit(main())


if __name__ == "__main__":
  cli()
