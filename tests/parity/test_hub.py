"""``biomedjax.load("hf-hub:<id>")``: converted once into ``$BIOMEDJAX_CACHE``, keyed by the source
files' hash, reused; offline with a converted copy it loads, without one it is one line. A local
folder (``$BIOMEDJAX_HUB_MIRROR``) stands in for the hub."""

import ml_collections
import numpy as np
import pytest

import biomedjax
from biomedjax import hub
from biomedjax.tools import provenance
from biomedjax.models import biomedclip as bc
from tests.parity import clip_fixture as cf


@pytest.fixture
def mirror(tmp_path, monkeypatch):
  folder, _ = cf.make_openclip_checkpoint(tmp_path / "mirror" / "lab" / "tiny-clip", "tiny_clip",
                                          safetensors=True)
  monkeypatch.setenv("BIOMEDJAX_HUB_MIRROR", str(tmp_path / "mirror"))
  monkeypatch.setenv("BIOMEDJAX_CACHE", str(tmp_path / "cache"))
  return folder


def test_converts_once_reuses_and_reconverts_a_changed_upload(mirror, tmp_path):
  m = biomedjax.load("hf-hub:lab/tiny-clip")
  entries = sorted((tmp_path / "cache").iterdir())
  assert len(entries) == 1 and entries[0].name.startswith("lab--tiny-clip-")
  assert bc.read_manifest(entries[0])["source_model"] == "lab/tiny-clip"

  stamp = (entries[0] / "manifest.json").stat().st_mtime_ns
  again = biomedjax.load("hf-hub:lab/tiny-clip")
  assert (entries[0] / "manifest.json").stat().st_mtime_ns == stamp  # reused, not re-converted
  np.testing.assert_array_equal(again.params["logit_scale"], m.params["logit_scale"])
  config = ml_collections.ConfigDict({"init": "hf-hub:lab/tiny-clip", "preset": "tiny"})
  assert provenance.backbone(config)["dir"] == str(entries[0].absolute())

  (mirror / "open_clip_config.json").write_text(
      (mirror / "open_clip_config.json").read_text() + "\n")  # a new upload
  biomedjax.load("hf-hub:lab/tiny-clip")
  assert len(list((tmp_path / "cache").iterdir())) == 2


def test_offline_uses_the_converted_copy_or_says_what_to_fetch(mirror, tmp_path, monkeypatch):
  biomedjax.load("hf-hub:lab/tiny-clip")
  monkeypatch.setenv("BIOMEDJAX_HUB_MIRROR", str(tmp_path / "empty"))  # the hub is out of reach
  assert hub.resolve("hf-hub:lab/tiny-clip").parent == tmp_path / "cache"
  monkeypatch.setenv("BIOMEDJAX_CACHE", str(tmp_path / "fresh"))
  with pytest.raises(FileNotFoundError) as e:
    biomedjax.load("hf-hub:lab/tiny-clip")
  msg = str(e.value)
  assert "\n" not in msg and "https://huggingface.co/lab/tiny-clip" in msg
  assert "*.safetensors" in msg and "BIOMEDJAX_HUB_MIRROR/lab/tiny-clip/" in msg
