"""Errors in one line (culprit + fix; --debug for the traceback), every bad image listed, skipped
images recorded and left out of the few-shot selection, log lines never glued to a progress bar,
``launch.py --list`` and ``--show``."""

import io
import json
import logging
import pathlib
import subprocess
import sys

import ml_collections as mlc
import pytest

from biomedjax.tools import cli
from biomedjax.data import readers, sources, splits, transforms
from biomedjax.train import lifecycle, setup
from tests.data.conftest import write_png

REPO = pathlib.Path(__file__).resolve().parents[2]


def _launch(*args, timeout=300):
  return subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=timeout)


def test_config_key_typo_is_one_unescaped_line_naming_the_flag(tmp_path):
  run = _launch("--config=configs/coop.py", "--config.optim.lrr=1", f"--workdir={tmp_path}")
  assert run.returncode == 2
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1, run.stderr
  assert "--config.optim.lrr" in lines[0] and 'Did you mean "lr"' in lines[0]
  assert "\\n" not in lines[0] and "\\'" not in lines[0]
  debug = _launch("--config=configs/coop.py", "--config.optim.lrr=1", f"--workdir={tmp_path}",
                  "--debug")
  assert "Traceback" in debug.stderr


def test_data_error_is_one_line_naming_the_file(tmp_path):
  missing = tmp_path / "nope" / "split.json"
  run = _launch("--config=configs/demo.py:method=linear_probe", f"--workdir={tmp_path / 'w'}",
                f"--config.data.split_file={missing}", f"--config.data.image_root={tmp_path}",
                "--config.data.dataset=mine")
  assert run.returncode == 2
  errors = [l for l in run.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and str(missing) in errors[0], run.stderr[-2000:]
  assert "Traceback" not in run.stderr


def test_one_line_formats_config_string_and_bad_image_errors():
  line = cli.one_line(KeyError("unknown config arg 'datset' in 'datset=x'; known: [...]"))
  assert line.startswith("error: unknown config arg 'datset'") and '"' not in line[:10]
  line = cli.one_line(transforms.BadImageError("a.png: cannot decode"))
  assert "skip_bad_images" in line and "\n" not in line


def _examples(tmp_path, n_bad):
  good = write_png(tmp_path / "good.png")
  out = [readers.Example(str(good), 0, "split.json:1")]
  for i in range(n_bad):
    (tmp_path / f"bad{i}.png").write_bytes(b"not a png")
    out.append(readers.Example(str(tmp_path / f"bad{i}.png"), 0, f"split.json:{i + 2}"))
  return out


@pytest.mark.parametrize("raised,line", [
    (KeyboardInterrupt(), "interrupted: " + cli.AFTER_STEPS),
    (lifecycle.Interrupted("SIGINT: stopped at step 4 of 20 with a checkpoint in W"),
     "interrupted: SIGINT: stopped at step 4 of 20 with a checkpoint in W")])
def test_ctrl_c_is_one_line_saying_what_is_kept_and_exit_130(monkeypatch, capsys, raised, line):
  """A Ctrl-C in the loop says where its checkpoint is; one outside the steps (preparing,
  evaluating, reporting) says that nothing was removed and the same command finishes the run."""
  def exit_now(code):
    raise SystemExit(code)
  monkeypatch.setattr(cli.os, "_exit", exit_now)
  monkeypatch.setattr(cli.logging, "shutdown", lambda: None)  # pytest's handlers stay open

  def interrupted():
    raise raised
  with pytest.raises(SystemExit) as exited:
    cli.run_guarded(interrupted, argv=[])
  assert exited.value.code == 130
  assert capsys.readouterr().err.strip().splitlines() == [line]


def test_all_bad_images_are_listed_with_the_skip_hint(tmp_path):
  examples = _examples(tmp_path, 23)
  with pytest.raises(transforms.BadImageError) as e:
    sources.validate_images(examples)
  text = str(e.value)
  assert text.startswith("23 unreadable image(s) of 24")
  assert all(f"split.json:{i + 2}:" in text for i in range(20))
  assert "split.json:22:" not in text and "and 3 more" in text
  assert "--config.data.skip_bad_images=True" in text
  skipped = []
  kept = sources.validate_images(examples, skip_bad_images=True, skipped=skipped)
  assert kept == examples[:1] and [r["origin"] for r in skipped] == [
      f"split.json:{i + 2}" for i in range(23)]


def test_skipped_images_are_recorded_and_not_in_the_selection(tmp_path):
  root = tmp_path / "img"
  items = []
  for label, name in enumerate(("cat", "dog")):
    for i in range(4):
      write_png(root / name / f"{i}.png", seed=i)
      items.append(splits.Item(f"{name}/{i}.png", label, name))
  (root / "dog/2.png").write_bytes(b"broken")
  split_file = tmp_path / "split.json"
  splits.write_split_file(split_file, {"train": items, "val": items[:2], "test": items})
  cfg = mlc.ConfigDict(dict(dataset="mine", root="", split_file=str(split_file),
                            image_root=str(root), prepared="", shots=0, setting="few_shot",
                            skip_bad_images=True, synthetic={}))
  data = setup.build_data(cfg, 1, tmp_path / "run")
  assert data.classnames == ("cat", "dog")
  assert [r["path"] for r in data.skipped_images] == [str(root / "dog/2.png")] * 2  # train, test
  selection = json.loads((tmp_path / "run/fewshot_selection.json").read_text())
  assert "dog/2.png" not in [p for p, _, _ in selection["train"]]
  assert len(selection["train"]) == 7 and len(selection["skipped_images"]) == 2
  assert len(data.splits["train"]) == 7


def test_log_lines_do_not_glue_to_a_progress_bar():
  from tqdm import tqdm
  buf = io.StringIO()
  handler = logging.StreamHandler(buf)
  logger = logging.getLogger("test_cli_errors.glue")
  logger.addHandler(handler)
  logger.propagate = False
  logging.root.addHandler(handler)  # the redirect acts on the root's console handlers
  try:
    with cli.logs_above_progress_bars():
      bar = tqdm(total=10, file=buf, desc="train", mininterval=0, ascii=True)
      bar.update(3)
      logger.warning("LOGLINE")
      bar.update(3)
      bar.close()
  finally:
    logging.root.removeHandler(handler)
  text = buf.getvalue()
  before = text[:text.index("LOGLINE")]
  assert before.endswith(("\r", "\n")), repr(text)
  assert handler.stream is buf  # restored


def test_list_names_every_method_config():
  run = _launch("--list")
  assert run.returncode == 0, run.stderr
  for name in ("coop", "cocoop", "kgcoop", "prograd", "biomedcoop", "linear_probe", "zeroshot"):
    assert f"configs/{name}.py" in run.stdout


def test_show_prints_value_default_and_meaning():
  run = _launch("--config=configs/coop.py:shots=4", "--config.optim.lr=0.01", "--show")
  assert run.returncode == 0, run.stderr
  lines = {l.split("=")[0].strip(" *"): l for l in run.stdout.splitlines() if " = " in l}
  assert lines["data.shots"].startswith("*") and "(default 16)" in lines["data.shots"]
  assert "K per class" in lines["data.shots"]
  assert "(default 0.002)" in lines["optim.lr"] and "0.01" in lines["optim.lr"]
  assert "method.n_ctx" in lines


# Issue 22: each mistake of a new user's session is ONE line naming the culprit and the fix.
SUFFIX = "  [--debug shows the traceback]"


def _checked(argv):
  """The line launch.cli prints for argv's mistake (its check before absl, in this process)."""
  from biomedjax.tools import launch_checks
  with pytest.raises(launch_checks.CommandError) as e:
    launch_checks.check_command(argv)
  return cli.one_line(e.value, argv)


def test_config_file_typo_names_the_closest_file_and_list(tmp_path):
  run = _launch("--config=configs/copo.py", f"--workdir={tmp_path / 'w'}")
  assert run.returncode == 2
  assert run.stderr.strip().splitlines() == [
      "error: --config=configs/copo.py: no such config file; did you mean configs/coop.py? "
      "(python launch.py --list prints every method's config file)" + SUFFIX]
  assert not (tmp_path / "w").exists()


def test_preset_typo_is_one_line_and_writes_nothing(tmp_path):
  root = tmp_path / "img"
  items = [splits.Item(f"{c}/{i}.png", n, c) for n, c in enumerate(("a", "b")) for i in range(2)]
  for it in items:
    write_png(root / it.path)
  splits.write_split_file(tmp_path / "mine.json", {"train": items, "test": items})
  work = tmp_path / "w"
  run = _launch("--config=configs/coop.py:shots=1", "--config.model.preset=tinyy",
                f"--config.data.split_file={tmp_path / 'mine.json'}",
                f"--config.data.image_root={root}", f"--workdir={work}")
  assert run.returncode == 2
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      "error: --config.model.preset=tinyy: no such preset; did you mean tiny? (presets: "), lines
  assert not work.exists() or not list(work.iterdir())  # no stray fewshot_selection.json


def test_config_string_and_override_type_errors_are_one_line():
  assert _checked(["launch.py", "--config=configs/coop.py:model"]) == (
      "error: --config=configs/coop.py:model: config arg 'model' needs a value (model=...); "
      "only bool keys may be given bare" + SUFFIX)
  assert _checked(["launch.py", "--config=configs/coop.py", "--config.optim.epochs=ten"]) == (
      "error: --config.optim.epochs=ten: optim.epochs takes an int (default 100 in "
      "configs/coop.py)" + SUFFIX)


def test_sweep_print_keeps_an_empty_model_value():
  run = _launch("--config=configs/coop.py:model=,shots=4,seeds=1", "--sweep=print",
                "--workdir=/tmp/never-written")
  assert run.returncode == 0, run.stderr
  lines = run.stdout.splitlines()
  assert lines and all("configs/coop.py:model=,dataset=" in l for l in lines), lines


def _tree(tmp_path, bad=()):
  root = tmp_path / "img"
  items = {"train": [], "val": [], "test": []}
  for label, name in enumerate(("cat", "dog")):
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
      for i in range(n):
        rel = f"{name}/{split}{i}.png"
        write_png(root / rel, seed=label * 7 + i)
        items[split].append(splits.Item(rel, label, name))
  items["val"].append(items["train"][0])  # the same image in two splits
  for rel in bad:
    (root / rel).write_bytes(b"broken")
  splits.write_split_file(tmp_path / "split.json", items)
  return root, tmp_path / "split.json"


def _data_cfg(split_file, root, **kw):
  return mlc.ConfigDict(dict(dataset="mine", root="", split_file=str(split_file),
                             image_root=str(root), prepared="", shots=0, setting="few_shot",
                             skip_bad_images=False, synthetic={}, **kw))


def test_wrong_image_root_names_the_image_root(tmp_path):
  root, split_file = _tree(tmp_path)
  for wrong in (tmp_path / "nope", tmp_path):  # missing; a folder without the images
    with pytest.raises(splits.SplitError) as e:
      setup.build_data(_data_cfg(split_file, wrong), 1, tmp_path / "run")
    line = cli.one_line(e.value)
    assert line.startswith(f"error: image root {wrong} "), line
    assert "--config.data.image_root=" in line and "fix the split file" not in line


def test_corrupt_images_of_every_split_are_listed_once_in_one_line(tmp_path):
  root, split_file = _tree(tmp_path, bad=("cat/train0.png", "dog/test1.png"))
  with pytest.raises(transforms.BadImageError) as e:
    setup.build_data(_data_cfg(split_file, root), 1, tmp_path / "run")
  line = cli.one_line(e.value)
  assert line.startswith("error: 2 unreadable image(s) of 12: "), line
  assert line.count("cat/train0.png") == 1 and line.count("dog/test1.png") == 1  # train+val: once
  assert f"{split_file}:3, {split_file}:" in line  # both lines that name cat/train0.png
  assert line.count("skip_bad_images") == 1 and " at 0x" not in line


def test_missing_attribute_file_names_the_attributes_dataset_option(tmp_path):
  from biomedjax.methods import attributes
  (tmp_path / "btmri_des.json").write_text("{}")
  with pytest.raises(FileNotFoundError) as e:
    attributes.load(tmp_path, "knee", "des", ["a"])
  line = cli.one_line(e.value)
  assert "--config.method.attributes_dataset=<key>" in line and "(the folder has: btmri)" in line


def test_missing_model_dir_is_refused_before_anything_is_written(tmp_path):
  cfg = mlc.ConfigDict(dict(init=str(tmp_path / "ckpt"), preset="biomedclip"))
  with pytest.raises(FileNotFoundError) as e:
    setup.check_model(cfg)
  line = cli.one_line(e.value)
  assert line.startswith(f"error: --config.model.init={tmp_path / 'ckpt'}: not a converted model")
  assert "--config.model.init= for random weights" in line


def test_predict_errors_hint_only_at_predict_options():
  bad = cli.one_line(transforms.BadImageError("a.png: cannot decode image"), hints=cli.PREDICT_HINTS)
  missing = cli.one_line(FileNotFoundError(2, "No such file", "x.csv"), hints=cli.PREDICT_HINTS)
  assert "--images" in bad
  for line in (bad, missing):
    assert "--config" not in line and "--show" not in line, line
