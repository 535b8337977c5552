"""`pip install .` gives an importable library and the console scripts, usable from any folder.

Built offline from a copy of the working tree (no build isolation, no dependencies: the test
venv already has them) and installed with ``--target``, so nothing outside tmp_path changes.
"""

import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ("biomedjax-launch", "biomedjax-convert", "biomedjax-report", "biomedjax-predict",
           "biomedjax-export")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("pkg")
  src = tmp / "src"
  shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
      ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "tests", "benchmarks"))
  pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
  subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "wheel"),
                  str(src)], check=True, capture_output=True)
  wheel, = (tmp / "wheel").glob("biomedjax-*.whl")
  target = tmp / "site"
  subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target),
                  str(wheel)], check=True, capture_output=True)
  elsewhere = tmp / "elsewhere"
  elsewhere.mkdir()
  env = {**os.environ, "PYTHONPATH": str(target), "JAX_PLATFORMS": "cpu"}
  return target, elsewhere, env


def _run(cmd, cwd, env):
  return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_from_any_folder(installed):
  target, elsewhere, env = installed
  run = _run([sys.executable, "-c", "import biomedjax, biomedjax.convert.biomedclip, "
              "biomedjax.configs.coop, biomedjax.launcher.launch; "
              "print(biomedjax.__file__, biomedjax.__version__)"], elsewhere, env)
  assert run.returncode == 0, run.stderr
  assert run.stdout.startswith(str(target)) and "0.1.0" in run.stdout
  # Nothing top-level but biomedjax: no `configs`, `convert` or `launch` to collide with others.
  assert sorted(p.name for p in target.iterdir() if not p.name.endswith(
      (".dist-info", "bin"))) == ["biomedjax"]


def test_console_scripts_exist_and_run(installed):
  target, elsewhere, env = installed
  for name in SCRIPTS:
    assert (target / "bin" / name).is_file(), name
  listing = _run([str(target / "bin" / "biomedjax-launch"), "--list"], elsewhere, env)
  assert listing.returncode == 0, listing.stderr
  assert "configs/coop.py" in listing.stdout and "linear_probe" in listing.stdout
  # `--config configs/coop.py` resolves to the installed config file from a folder without one.
  shown = _run([str(target / "bin" / "biomedjax-launch"), "--config", "configs/coop.py:shots=4",
                "--show"], elsewhere, env)
  assert shown.returncode == 0, shown.stderr
  assert "data.shots = 4" in shown.stdout
  helped = _run([str(target / "bin" / "biomedjax-launch"), "--help"], elsewhere, env)
  assert helped.returncode == 0 and "--workdir" in helped.stdout and "--sweep" in helped.stdout
  for name in ("biomedjax-report", "biomedjax-convert", "biomedjax-predict", "biomedjax-export"):
    run = _run([str(target / "bin" / name), "--help"], elsewhere, env)
    assert run.returncode == 0 and "usage" in run.stdout, (name, run.stderr)


def test_converted_folders_are_readable_by_others(tmp_path):
  from convert import biomedclip as conv
  root = tmp_path / "model"
  (root / "params" / "d").mkdir(parents=True)
  (root / "params" / "d" / "x").write_text("1")
  root.chmod(0o700)
  (root / "params").chmod(0o700)
  (root / "params" / "d" / "x").chmod(0o600)
  conv.make_readable(root)
  for path in [root, *root.rglob("*")]:
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))


def test_readme_model_block_runs_with_random_weights(tmp_path, monkeypatch):
  """"Using a converted model" as written, with the random-weight load its comment offers."""
  import re
  import numpy as np
  from PIL import Image
  text = (REPO / "README.md").read_text()
  section = text[text.index("## Using a converted model"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  assert 'biomedjax.load(preset="tiny")' in code
  code = code.replace('biomedjax.load("ckpt/biomedclip")', 'biomedjax.load(preset="tiny")')
  Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(tmp_path / "scan.png")
  monkeypatch.chdir(tmp_path)
  scope = {}
  exec(compile(code, "README.md", "exec"), scope)
  import biomedjax
  from biomedjax.tools import trained
  assert type(scope["m"]) is type(trained.load_backbone(
      {"backbone": {"kind": "random", "preset": "tiny"}, "vocabulary_words": ["a"]}))
  assert type(scope["m"]).__name__ == "BiomedCLIP" and biomedjax.load.__module__ == "biomedjax"
