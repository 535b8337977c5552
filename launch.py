"""Runs one experiment, or a config file's sweep.

  python launch.py --config configs/coop.py:dataset=btmri,shots=16,seed=1 --workdir runs/x
  python launch.py --config configs/coop.py --config.optim.lr=0.001 --workdir runs/coop --sweep=print
  python launch.py --config configs/demo.py --workdir /tmp/demo
  python launch.py --config configs/biomedcoop.py:dataset=btmri,shots=16,seed=1 \
      --grid=method.lambda_sccm=0.25+0.5+1+2 --grid=method.lambda_kdsp=0.25+0.5+1+2 \
      --workdir runs/grid --sweep=packed   # 16 runs trained as one program (train/packed.py)
  python launch.py --list                                    # every method and its config file
  python launch.py --config configs/coop.py:shots=4 --show   # every option: value, default, meaning

Config and data errors print one line naming the culprit and the fix (``--debug``: the
traceback).

An existing --workdir resumes its run. Several processes (hosts, GPU nodes, or processes on one
machine) run the same command, each with its own process id (README, "Several machines"):

  JAX_COORDINATOR_ADDRESS=10.0.0.1:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 python launch.py ...

or ``--coordinator_address/--num_processes/--process_id``; TPU VMs, SLURM and Open MPI need none
of them (``biomedjax.train.distributed``).
"""

import logging
import pathlib
import shlex
import subprocess
import sys

from absl import app, flags
from ml_collections import config_flags

import biomedjax  # noqa: F401  (sets its XLA CPU flag before JAX starts)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "configs/<method>.py[:args]", lock_config=True)
flags.DEFINE_string("workdir", None, "run directory (created; resumed if it exists)")
flags.DEFINE_enum("sweep", "", ["", "print", "run", "packed"],
                  "print: one command per point of the config file's sweep; run: run them; "
                  "packed: run them, points sharing a data stream as one vmapped program "
                  "(train-stage methods: biomedjax/train/packed.py) and the seeds of a "
                  "fit-stage setting as one computation (biomedjax/train/fit_pack.py)")
flags.DEFINE_multi_string("grid", [], "KEY=V1+V2+...: also sweep config key KEY (e.g. "
                          "method.lambda_sccm=0.25+0.5) over the values, one run per combination")
flags.DEFINE_string("coordinator_address", None,
                    "HOST:PORT of process 0 of a multi-process run (else $JAX_COORDINATOR_ADDRESS)")
flags.DEFINE_integer("num_processes", None, "processes of the run (else $JAX_NUM_PROCESSES)")
flags.DEFINE_integer("process_id", None, "this process, 0..num_processes-1 (else $JAX_PROCESS_ID)")
flags.DEFINE_integer("distributed_timeout", None,
                     "seconds after which a silent process counts as dead and the others stop "
                     "(else $BIOMEDJAX_DISTRIBUTED_TIMEOUT, default 60)")
flags.DEFINE_bool("show", False, "print the resolved config (value, default, meaning) and exit")
flags.DEFINE_bool("list", False, "print every method config file and exit")
flags.DEFINE_bool("debug", False, "full tracebacks instead of one-line errors")
flags.mark_flags_as_required(["config"])
DISTRIBUTED_FLAGS = ("coordinator_address", "num_processes", "process_id", "distributed_timeout")
CONFIGS = pathlib.Path(__file__).resolve().parent / "configs"


def _merge_args(base: str, point: str) -> str:
  """The command's config-string arguments with a sweep point's on top (point wins); the grid
  the command named (``datasets=a+b,shots=1+4``) is in the points already."""
  from configs import common
  base = common.sweep_grid(base)[0]
  items = dict(i.partition("=")[::2] for i in base.split(",") if i)
  items.update(i.partition("=")[::2] for i in point.split(",") if i)
  return ",".join(f"{k}={v}" if v else k for k, v in items.items())


def _config_overrides(args: list[str]) -> list[str]:
  """This command's ``--config.x=y`` / ``--config.x y`` flags (absl strips them from argv)."""
  out = []
  for i, a in enumerate(args):
    if a.startswith("--config."):
      out.append(a if "=" in a or i + 1 == len(args) else f"{a}={args[i + 1]}")
  return out


def _own_data_arg(base_arg: str, overrides: list[str]) -> str:
  """With own data (a split file or prepared folder on the command) and no dataset named, the
  sweep covers that one data set only: never benchmark runs on data the user did not name."""
  from configs import common
  own = any(o.startswith(("--config.data.split_file", "--config.data.prepared"))
            for o in overrides)
  if own and "datasets" not in common.sweep_grid(base_arg)[1]:
    return ",".join(a for a in (base_arg, f"dataset={FLAGS.config.data.dataset}") if a)
  return base_arg


def _check_single_run(mode: str) -> None:
  from configs import common
  arg = config_flags.get_config_filename(FLAGS["config"]).partition(":")[2]
  several = [k for k, v in common.sweep_grid(arg)[1].items() if len(v) > 1]
  several += [g.partition("=")[0] for g in FLAGS.grid]
  if several and not mode:
    raise ValueError(f"the config string names several runs ({', '.join(several)}); add "
                         "--sweep=print, --sweep=run or --sweep=packed")


def _sweep_commands() -> list[tuple[list[str], pathlib.Path]]:
  """One launch command per sweep point, with this command's --config.* overrides kept."""
  import importlib.util
  file, _, base_arg = config_flags.get_config_filename(FLAGS["config"]).partition(":")
  spec = importlib.util.spec_from_file_location("sweep_config", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  points = []
  overrides = _config_overrides(sys.argv[1:])
  sweep_arg = _own_data_arg(base_arg, overrides)
  module.sweep(lambda **kw: points.append(kw["arg"]), sweep_arg or None)
  out = []
  for point in points:
    for combo in _grid_combinations():
      name = "_".join([point.replace(",", "_").replace("=", "-"),
                       *(f"{k}-{v}" for k, v in combo)]).strip("_")
      workdir = pathlib.Path(FLAGS.workdir) / name
      cmd = [sys.executable, __file__, f"--config={file}:{_merge_args(base_arg, point)}",
             *overrides, *(f"--config.{k}={v}" for k, v in combo), *_variant(combo),
             f"--workdir={workdir}", *_distributed_flags()]
      out.append((cmd, workdir))
  return out


def _grid_combinations() -> list[tuple[tuple[str, str], ...]]:
  """The --grid flags' product: [(("method.w", "1.0"), ("optim.lr", "0.002")), ...]."""
  import itertools
  axes = []
  for g in FLAGS.grid:
    key, _, values = g.partition("=")
    vals = [v.strip() for v in values.split("+") if v.strip()]
    if not key.strip() or not vals:
      raise ValueError(f"--grid={g!r}: use KEY=V1+V2 (e.g. method.lambda_sccm=0.25+0.5)")
    if key.strip().removeprefix("config.") in (k for k, _ in axes):
      raise ValueError(f"--grid key {key!r} given twice")
    axes.append((key.strip().removeprefix("config."), vals))
  return [tuple(zip([k for k, _ in axes], combo))
          for combo in itertools.product(*(v for _, v in axes))]


def _variant(combo) -> list[str]:
  """A grid point's label in the report (its rows would otherwise collide with the others')."""
  return [f"--config.variant={','.join(f'{k}={v}' for k, v in combo)}"] if combo else []


def _point_config(cmd: list[str]):
  """A sweep command's config, resolved as its own process would (locked, overrides applied)."""
  args = [cmd[1], *(a for a in cmd[2:] if a.startswith("--config"))]
  fv = flags.FlagValues()  # config_flags defines the --config.* overrides from sys_argv
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True,
                                  sys_argv=args)
  fv(args)
  return fv.config


def _distributed_flags() -> list[str]:
  """This command's multi-process flags, for the sweep's runs (each one a multi-process run)."""
  return [f"--{n}={FLAGS[n].value}" for n in DISTRIBUTED_FLAGS if FLAGS[n].value is not None]


def run_sweep(mode: str, process_id: int) -> None:
  """Runs (or prints) the sweep's points one after another; the report is process 0's.

  Every process of a multi-process sweep runs this loop, and each point's run is itself a
  multi-process run: the processes skip the same finished points, since a point's results.json
  only appears at the end of its run.
  """
  from biomedjax import report
  commands = _sweep_commands()
  if mode == "packed":
    from biomedjax.train import packed
    commands = run_packed_fits(commands)
    packed.run_sweep([packed.Point(_point_config(c), w) for c, w in commands], FLAGS.workdir)
    commands = []
  for cmd, workdir in commands:
    if (workdir / "results.json").exists():
      logging.info("done, skipping: %s", workdir)
      continue
    if mode == "print":
      print(shlex.join(cmd))
    else:
      logging.info("running %s", shlex.join(cmd))
      subprocess.run(cmd, check=True)
  if mode in ("run", "packed") and process_id == 0:
    print(report.make_report([FLAGS.workdir], pathlib.Path(FLAGS.workdir) / "report"))


def run_packed_fits(commands):
  """--sweep=packed for fit-stage methods: the unfinished points that differ only in their seed
  and are ``fit_pack.packable`` run here, in this process, as one computation each
  (``fit_pack.run``); returns the other points, for ``packed.run_sweep``."""
  import collections
  import jax
  from biomedjax.train import fit_pack, workdir_lock
  groups = collections.defaultdict(list)
  for cmd, workdir in commands:
    config = _point_config(cmd)
    groups[fit_pack.setting_key(config)].append((cmd, workdir, config))
  rest = []
  for points in groups.values():
    todo = [p for p in points if not (p[1] / "results.json").exists()]
    if not fit_pack.packable([c for _, _, c in todo]):
      rest += [(cmd, workdir) for cmd, workdir, _ in points]
      continue
    if jax.process_count() > 1:
      raise ValueError("--sweep=packed fits the seeds of a fit-stage method in one process; "
                       "drop the multi-process settings or use --sweep=run")
    logging.info("packed: %s", ", ".join(str(w) for _, w, _ in todo))
    with workdir_lock.hold(*(w for _, w, _ in todo)):  # one run per workdir
      fit_pack.run([c for _, _, c in todo], [w for _, w, _ in todo])
  return rest


def jax_process_index() -> int:
  import jax
  return jax.process_index()


def show() -> str:
  """The resolved config, each option with its default (the file without arguments) and meaning."""
  import importlib.util
  from biomedjax import cli as cli_lib
  file = pathlib.Path(config_flags.get_config_filename(FLAGS["config"]).partition(":")[0])
  spec = importlib.util.spec_from_file_location("shown_config", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  methods_dir = pathlib.Path(cli_lib.__file__).parent / "methods"
  method_files = [p for p in (methods_dir / f"{FLAGS.config.method.name}.py",) if p.is_file()]
  # Options inherited from a shared dataclass (e.g. the VR methods') are commented where written.
  method_files = cli_lib.option_sources(FLAGS.config.method.name) or method_files
  meanings = cli_lib.field_comments(CONFIGS / "base.py", *method_files, file)
  return f"# {file}  (* = differs from the file's default)\n" + cli_lib.show_config(
      FLAGS.config, module.get_config(), meanings)


def main(argv):
  if FLAGS.show:
    return print(show())
  if not FLAGS.workdir:
    raise ValueError("--workdir is required (the run directory; created, or resumed)")
  logging.getLogger("biomedjax").setLevel(logging.INFO)
  for noisy in ("orbax", "absl", "jax._src.xla_bridge", "grain"):  # keep the console readable
    logging.getLogger(noisy).setLevel(logging.WARNING)
  from biomedjax.train import distributed
  settings = distributed.resolve(*(FLAGS[n].value for n in DISTRIBUTED_FLAGS))
  mode = FLAGS.sweep or ("run" if FLAGS.config.run_sweep else "")
  if mode == "run" and FLAGS.config.get("pack", False):
    mode = "packed"
  _check_single_run(mode)
  if mode == "packed":  # the packs run in this process
    from biomedjax import cli as cli_lib
    distributed.initialize(settings)
    with distributed.stop_all_on_error(FLAGS.workdir), cli_lib.logs_above_progress_bars():
      return run_sweep(mode, jax_process_index())
  if mode:  # each point's run starts its own jax.distributed
    return run_sweep(mode, distributed.process_id_before_start(settings))
  distributed.initialize(settings)
  from biomedjax import cli as cli_lib
  from biomedjax.train.loop import train_and_evaluate
  with distributed.stop_all_on_error(FLAGS.workdir), cli_lib.logs_above_progress_bars():
    train_and_evaluate(FLAGS.config, FLAGS.workdir)


def cli() -> None:
  """``python launch.py`` / the ``biomedjax-launch`` console script."""
  from biomedjax import cli as cli_lib
  if "--list" in sys.argv[1:]:
    print(cli_lib.list_configs(CONFIGS))
    return
  sys.argv = cli_lib.resolve_config_arg(sys.argv, CONFIGS)
  sys.exit(cli_lib.run_guarded(lambda: app.run(main)))


if __name__ == "__main__":
  cli()
