"""The adapter baselines from the launcher on a CONVERTED random-weight BiomedCLIP, real data.

A tiny open_clip ``CustomTextCLIP`` (timm ViT + HF BERT, BiomedCLIP's layout) with random
weights is built in PyTorch, converted by ``convert.biomedclip`` (what ``python -m convert``
runs), and every method runs from ``launch.py`` with ``--config.model.init=<converted dir>`` on
the BTMRI and BUSI samples, shortened schedules. Two go through ``--sweep=packed`` (two seeds
fitted as one computation, biomedjax/train/fit_pack.py, then the sweep's report), two as plain
single runs.

The full-size path is the same code: only the architecture read from ``open_clip_config.json``
differs, and converting a full-size random BiomedCLIP is tested in
tests/parity/test_biomedclip_full.py. Skips where ``../shared/data/images`` is absent.
"""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.adapter_samples import SHORT, datasets  # noqa: F401  (a fixture)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  from convert import biomedclip as conv
  from tests.parity import openclip_fixture as fx
  src, _ = fx.make_checkpoint(tmp_path_factory.mktemp("src"), "tiny", seed=2, hub_layout=False)
  out = tmp_path_factory.mktemp("converted") / "biomedclip_tiny"
  assert conv.main(["--src", str(src), "--out", str(out), "--preset", "tiny"]) == 0
  return out


# tip_adapter (packed, BTMRI) stays in the default suite; the other three are marked slow.
@pytest.mark.parametrize("method,dataset,packed", [
    ("tip_adapter", "btmri", True),
    pytest.param("lp_plus_plus", "busi", True, marks=pytest.mark.slow),
    pytest.param("clip_adapter", "busi", False, marks=pytest.mark.slow),
    pytest.param("tip_adapter_f", "btmri", False, marks=pytest.mark.slow)])
def test_runs_from_the_launcher_on_converted_weights(method, dataset, packed, converted,
                                                     datasets, tmp_path):
  if dataset not in datasets:
    pytest.skip(f"{dataset} sample absent")
  split_file, image_root = datasets[dataset]
  seeds = "seeds=1+2" if packed else "seed=2"
  cmd = [sys.executable, "launch.py",
         f"--config=configs/{method}.py:dataset={dataset},shots=2,{seeds}",
         f"--config.model.init={converted}", f"--config.data.split_file={split_file}",
         f"--config.data.image_root={image_root}", "--config.train.progress=False",
         "--config.eval.reliability=none", f"--workdir={tmp_path}"]
  cmd += [f"--config.method.{k}={v}" for k, v in SHORT[method].items()]
  if packed:
    cmd.append("--sweep=packed")
  run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  found = sorted(tmp_path.rglob("results.json"))
  assert len(found) == (2 if packed else 1)
  for path in found:
    results = json.loads(path.read_text())
    assert results["method"] == method and results["harness"] is True
    backbone = results["provenance"]["backbone"]
    assert backbone["kind"] == "converted" and backbone["dir"] == str(converted)
    assert 0.0 <= results["test"]["accuracy"] <= 1.0
    assert (path.parent / "results.md").exists()
    assert (path.parent / "trained_state.safetensors").exists()
    selection = json.loads((path.parent / "fewshot_selection.json").read_text())
    assert selection["seed"] == 1  # the harness: every run seed draws the seed-1 images
    assert len(selection["train"]) == 2 * (4 if dataset == "btmri" else 3)
  assert "augmented view" in run.stderr
  if packed:
    assert "as one computation" in run.stderr
    assert {json.loads(p.read_text())["seed"] for p in found} == {1, 2}
    report = (tmp_path / "report" / "report.md").read_text()
    assert f"| {method} |" in report and "(CI ±" in report
