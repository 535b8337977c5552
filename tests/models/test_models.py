"""Model-level properties that need no PyTorch: sizes, entry points, pad-length invariance."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biomedjax.models import biomedclip as bc
from biomedjax.models import config as model_config
from biomedjax.models.clip import CLIP
from biomedjax.models.tokenizer import Tokenizer
from biomedjax.models.vocab import write_vocab


def _count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def test_presets_share_one_model_and_full_size_count():
  # 195.9M as open_clip reports for BiomedCLIP (351 tensors; BERT q/k/v fused here -> 303 leaves).
  full = bc.abstract_params(model_config.biomedclip())
  assert _count(full) == 195_902_721 and len(jax.tree.leaves(full)) == 303
  tiny = bc.abstract_params(model_config.tiny())
  assert jax.tree.structure(tiny) != jax.tree.structure(full)  # depth differs ...
  assert set(tiny) == set(full) == {"visual", "text", "logit_scale"}  # ... same module code
  assert _count(tiny) < 1_000_000


def test_config_json_roundtrip_and_unknown_key():
  cfg = model_config.tiny()
  assert model_config.CLIPConfig.from_json(cfg.to_json()) == cfg
  bad = json.loads(cfg.to_json())
  bad["vision"]["widht"] = 3
  with pytest.raises(ValueError, match=r"model config 'vision': unknown key\(s\) \['widht'\]"):
    model_config.CLIPConfig.from_dict(bad)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
  cfg = model_config.tiny()
  vocab = write_vocab(tmp_path_factory.mktemp("vocab"), ["glioma", "tumor", "brain", "photo"],
                      size=cfg.text.vocab_size)
  return bc.BiomedCLIP(cfg, bc.init_params(cfg, seed=0), Tokenizer(vocab, 256))


def _cos(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_pad_length_does_not_change_text_features(tiny_model):
  m = tiny_model
  texts = ["a photo of a glioma tumor.", "brain", "a photo of a normal brain with a tumor"]
  full = np.asarray(m.encode_text(*m.tokenize(texts)))
  for length in ("bucket", 24, 100):
    short = np.asarray(m.encode_text(*m.tokenize(texts, length=length)))
    assert _cos(full, short).min() > 0.999999
    np.testing.assert_allclose(short, full, rtol=1e-5, atol=1e-6)


def test_embedding_entry_point_equals_id_entry_point(tiny_model):
  m = tiny_model
  ids, mask = m.tokenize(["a photo of a glioma tumor.", "brain"], length=16)
  p = {"params": m.params}
  embeds = m.module.apply(p, jnp.asarray(ids), method=CLIP.embed_tokens)
  via_embeds = m.module.apply(p, embeds, jnp.asarray(mask, bool), method=CLIP.encode_text_embeds)
  np.testing.assert_allclose(np.asarray(via_embeds), np.asarray(m.encode_text(ids, mask)),
                             rtol=1e-6, atol=1e-6)
  # replacing a row of the embeddings (what prompt learning does) changes the features
  changed = m.module.apply(p, embeds.at[:, 1].set(0.5), jnp.asarray(mask, bool),
                           method=CLIP.encode_text_embeds)
  assert np.abs(np.asarray(changed) - np.asarray(via_embeds)).max() > 1e-3


def test_logits_are_scaled_cosines(tiny_model):
  m = tiny_model
  pixels = np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype(np.float32)
  ids, mask = m.tokenize(["glioma", "brain", "photo"], length=8)
  img, txt = np.array(m.encode_image(pixels)), np.array(m.encode_text(ids, mask))
  img /= np.linalg.norm(img, axis=-1, keepdims=True)
  txt /= np.linalg.norm(txt, axis=-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(m.logits(pixels, ids, mask)),
                             m.logit_scale * img @ txt.T, rtol=1e-5, atol=1e-5)


def test_saved_params_round_trip_and_mismatch_is_named(tmp_path, tiny_model):
  bc.save_params(tmp_path / "p", tiny_model.params)
  restored = bc.restore_params(tmp_path / "p", model_config.tiny())
  jax.tree.map(np.testing.assert_array_equal, restored, tiny_model.params)
  with pytest.raises(ValueError, match="checkpoint does not match config.json"):
    bc.restore_params(tmp_path / "p", model_config.biomedclip())


def test_load_names_a_missing_directory(tmp_path):
  import biomedjax
  with pytest.raises(FileNotFoundError, match="config.json not found"):
    biomedjax.load(tmp_path)


def test_device_normalisation_equals_the_host_transform(tmp_path):
  """uint8 from the pipeline, standardised by the backbone with its config's mean/std, equals
  open_clip's host-side Normalize (``preprocess.normalize``) to float rounding."""
  import jax.numpy as jnp
  from biomedjax.models import preprocess as pp
  from tests import tiny_backbone
  backbone, params = tiny_backbone.make(tmp_path)
  images = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
  host = pp.normalize(images, backbone.cfg.image_mean, backbone.cfg.image_std)
  np.testing.assert_allclose(backbone.normalize(jnp.asarray(images)), host, rtol=0, atol=1e-6)
  np.testing.assert_allclose(backbone.normalize(jnp.asarray(images) / 255.0), host, atol=1e-5)
  np.testing.assert_allclose(backbone.image_features(params, jnp.asarray(images)),
                             backbone.encode_pixels(params, jnp.asarray(host)), atol=1e-5)


def test_bfloat16_towers_stay_close_to_float32(tmp_path):
  """model.compute_dtype="bfloat16": parameters stay fp32, the towers compute in bf16, features
  come back fp32 with cosine > 0.999 to the fp32 ones (the bf16 parity tier; fp32 is the
  default and the reference)."""
  import jax.numpy as jnp
  from biomedjax.methods.base import Backbone
  from tests import tiny_backbone
  backbone, params = tiny_backbone.make(tmp_path)
  bf16 = Backbone(backbone.module, backbone.tokenizer, "bfloat16")
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 224, 224, 3), np.uint8))
  ids, mask = backbone.tokenize(["a photo of a glioma tumor.", "a normal brain mri scan."])

  def cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)

  img32, img16 = backbone.image_features(params, images), bf16.image_features(params, images)
  txt32, txt16 = backbone.text_features(params, ids, mask), bf16.text_features(params, ids, mask)
  assert img16.dtype == txt16.dtype == jnp.float32
  assert cos(img32, img16).min() > 0.999 and cos(txt32, txt16).min() > 0.999
  assert not np.array_equal(img32, img16)  # it did compute in bf16
