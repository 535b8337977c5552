"""Runs one experiment, or a config file's sweep.

  python launch.py --config configs/coop.py:dataset=btmri,shots=16,seed=1 --workdir runs/x
  python launch.py --config configs/coop.py --config.optim.lr=0.001 --workdir runs/coop --sweep=print
  python launch.py --config configs/demo.py --workdir /tmp/demo
  python launch.py --config configs/biomedcoop.py:dataset=btmri,shots=16,seed=1 \
      --grid=method.lambda_sccm=0.25+0.5+1+2 --grid=method.lambda_kdsp=0.25+0.5+1+2 \
      --workdir runs/grid --sweep=packed   # 16 runs trained as one program (train/packed.py)
  python launch.py --config configs/paper/biomedcoop_fewshot.py:model=ckpt/biomedclip,root=/data,\
prompts=p.json --workdir runs/paper --sweep=plan   # a published table's runs (README, "Reproducing
      # the papers"); --sweep=count, --sweep=array --index=I (default $SLURM_ARRAY_TASK_ID)
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
import sys

from absl import app, flags
from ml_collections import config_flags

import biomedjax  # noqa: F401  (sets its XLA CPU flag before JAX starts)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "configs/<method>.py[:args]", lock_config=True)
flags.DEFINE_string("workdir", None, "run directory (created; resumed if it exists)")
flags.DEFINE_enum("sweep", "", ["", "print", "run", "packed", "plan", "count", "array"],
                  "print: one command per point of the config file's sweep; run: run them; "
                  "packed: run them, points sharing a data stream as one vmapped program "
                  "(train-stage methods: biomedjax/train/packed.py) and the seeds of a "
                  "fit-stage setting as one computation (biomedjax/train/fit_pack.py); "
                  "plan: what would run, what is missing (exit 1), what packs "
                  "(biomedjax/sweep/plan.py); count: the number of points; array: run point "
                  "--index only (biomedjax/sweep/array.py)")
flags.DEFINE_integer("index", None, "--sweep=array: the point to run (else $<--index_var>)")
flags.DEFINE_string("index_var", "SLURM_ARRAY_TASK_ID",
                    "--sweep=array: environment variable holding the index when --index is unset")
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
if not CONFIGS.is_dir():  # installed (setup.py): biomedjax.configs, which also answers `configs`
  import biomedjax.configs
  CONFIGS = pathlib.Path(biomedjax.configs.__file__).parent


def _sweep_command():
  """This command as a sweep (biomedjax/sweep/points.py)."""
  from biomedjax.sweep import points
  file, _, arg = config_flags.get_config_filename(FLAGS["config"]).partition(":")
  extra = tuple(f"--{n}={FLAGS[n].value}" for n in DISTRIBUTED_FLAGS if FLAGS[n].value is not None)
  return points.Command(file, arg, tuple(points.config_overrides(sys.argv[1:])), FLAGS.config,
                        tuple(FLAGS.grid), pathlib.Path(FLAGS.workdir), __file__, extra)


def _check_single_run(mode: str) -> None:
  from biomedjax.sweep import points
  arg = config_flags.get_config_filename(FLAGS["config"]).partition(":")[2]
  several = points.several_runs(arg, FLAGS.grid)
  if several and not mode:
    raise ValueError(f"the config string names several runs ({', '.join(several)}); add "
                     "--sweep=print, --sweep=run or --sweep=packed")


def run_sweep(mode: str, process_id: int) -> None:
  from biomedjax.sweep import execute, points
  execute.run_sweep(mode, points.enumerate_points(_sweep_command()), FLAGS.workdir, process_id)


def run_sweep_tool(mode: str) -> int:
  """--sweep=plan|count|array (biomedjax/sweep/): returns the exit status."""
  from biomedjax.sweep import array, plan, points
  sweep = array.from_sweep(points.enumerate_points(_sweep_command()))
  if mode == "count":
    print(len(sweep))
    return 0
  if mode == "array":
    array.run_index(sweep, array.index_from(FLAGS.index, FLAGS.index_var))
    return 0
  file, _, arg = config_flags.get_config_filename(FLAGS["config"]).partition(":")
  unrunnable = getattr(points.load_module(file), "unrunnable", lambda _: [])(arg or None)
  text, ok = plan.plan(sweep, unrunnable, file)
  print(text)
  return 0 if ok else 1


def jax_process_index() -> int:
  import jax
  return jax.process_index()


def show() -> str:
  """The resolved config, each option with its default (the file without arguments) and meaning."""
  import importlib.util
  from biomedjax.tools import cli as cli_lib
  file = pathlib.Path(config_flags.get_config_filename(FLAGS["config"]).partition(":")[0])
  spec = importlib.util.spec_from_file_location("shown_config", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  methods_dir = pathlib.Path(cli_lib.__file__).parents[1] / "methods"
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
  from biomedjax.tools import cli as cli_lib
  cli_lib.quiet_library_noise()
  from biomedjax.train import distributed
  settings = distributed.resolve(*(FLAGS[n].value for n in DISTRIBUTED_FLAGS))
  mode = FLAGS.sweep or ("run" if FLAGS.config.run_sweep else "")
  if mode == "run" and FLAGS.config.get("pack", False):
    mode = "packed"
  _check_single_run(mode)
  if mode in ("plan", "count", "array"):
    return run_sweep_tool(mode)
  if mode == "packed":  # the packs run in this process
    from biomedjax.tools import cli as cli_lib
    distributed.initialize(settings)
    with distributed.stop_all_on_error(FLAGS.workdir), cli_lib.logs_above_progress_bars():
      return run_sweep(mode, jax_process_index())
  if mode:  # each point's run starts its own jax.distributed
    return run_sweep(mode, distributed.process_id_before_start(settings))
  distributed.initialize(settings)
  from biomedjax.tools import cli as cli_lib
  from biomedjax.sweep import execute
  with distributed.stop_all_on_error(FLAGS.workdir), cli_lib.logs_above_progress_bars():
    execute.run_point(FLAGS.config, FLAGS.workdir)


def cli() -> None:
  """``python launch.py`` / the ``biomedjax-launch`` console script."""
  from biomedjax.tools import cli as cli_lib
  if "--list" in sys.argv[1:]:
    print(cli_lib.list_configs(CONFIGS))
    return
  if {"--help", "-h", "--helpshort"} & set(sys.argv[1:]):  # the console script's too
    print(__doc__ + "\nflags:\n" + FLAGS.module_help(sys.modules[__name__]))
    return
  sys.argv = cli_lib.resolve_config_arg(sys.argv, CONFIGS)
  from biomedjax import compile_cache
  compile_cache.configure()  # on by default; BIOMEDJAX_COMPILATION_CACHE=off|<folder>

  def checked_run():
    from biomedjax.tools import launch_checks  # config file, arguments, override types: one line
    sys.argv = launch_checks.check_command(sys.argv)
    return app.run(main)
  sys.exit(cli_lib.run_guarded(checked_run))


if __name__ == "__main__":
  cli()
