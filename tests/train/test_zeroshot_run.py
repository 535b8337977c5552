"""A zero-shot run encodes only the images it evaluates: its train split is never used."""

import json

from biomedjax.train import evaluate, loop
from configs import zeroshot


def test_zero_shot_run_skips_the_train_split(tmp_path, monkeypatch):
  encoded = []
  real = evaluate.map_images

  def spy(fn, source, mesh, data_cfg, desc, progress=True):
    encoded.append(desc)
    return real(fn, source, mesh, data_cfg, desc, progress)

  monkeypatch.setattr(evaluate, "map_images", spy)
  cfg = zeroshot.get_config("dataset=synthetic,shots=0")
  cfg.model.preset = "tiny"
  cfg.data.synthetic.per_class = 6
  cfg.train.progress = False
  results = loop.train_and_evaluate(cfg, tmp_path)
  assert not any("train" in d for d in encoded), encoded
  assert "test" in results and json.loads((tmp_path / "results.json").read_text())["test"]
