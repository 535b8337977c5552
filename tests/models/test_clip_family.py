"""The OpenAI-CLIP family under the methods' interface, without PyTorch: BPE vocabulary, config,
prompt learning on the causal text tower (EOT pooling) at 77 tokens and at a bucketed length."""

import json

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from biomedjax.methods import prompt_learner as pl
from biomedjax.models import config as model_config
from biomedjax.models.clip import l2_normalize
from biomedjax.train import setup
from tests import tiny_clip_backbone

CLASSES = tiny_clip_backbone.CLASSNAMES


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return tiny_clip_backbone.make(tmp_path_factory.mktemp("bpe"))


def test_generated_vocab_makes_whole_words_and_openai_special_ids(tiny):
  tok = tiny[0].tokenizer
  words = "a photo of glioma meningioma pituitary tumor normal brain with showing".split()
  ids, mask = tok(words, length=16)
  assert (mask.sum(1) == 3).all(), "each word is one token between SOT and EOT"
  assert (ids[:, 0] == 49406).all() and (ids[:, 2] == 49407).all() and len(tok) == 49408
  ids, mask = tok(["glioma " * 100, "zzz qqq!"])  # unknown words fall back to byte symbols
  assert mask[0].sum() == 77 and ids[0, 76] == 49407 and ids[0, 75] != 49407
  assert mask[1].sum() == 2 + 3 + 3 + 1


def test_config_family_round_trip_and_old_configs_are_biomedclip():
  cfg = model_config.tiny_clip()
  assert model_config.CLIPConfig.from_json(cfg.to_json()) == cfg
  old = json.loads(model_config.tiny().to_json())
  del old["family"]
  assert model_config.CLIPConfig.from_dict(old).family == "biomedclip"
  with pytest.raises(ValueError, match="'family'='vit'"):
    model_config.CLIPConfig.from_dict({**old, "family": "vit"})
  clip = json.loads(cfg.to_json())
  for key in ("hidden_dropout", "attention_dropout"):
    del clip["text"][key]  # absent keys take the family's value (no dropout), not BERT's 0.1
  assert model_config.CLIPConfig.from_dict(clip) == cfg
  clip["text"]["hidden_dropout"] = 0.1
  with pytest.raises(ValueError, match=r"'text.hidden_dropout'=0.1: the causal CLIP text tower"):
    model_config.CLIPConfig.from_dict(clip)


@pytest.mark.parametrize("position", ["end", "middle"])
def test_coop_prompts_same_features_at_77_and_bucket(tiny, position):
  backbone, params = tiny
  kw = dict(n_ctx=4, ctx_init="a photo of a", class_token_position=position)
  full = pl.PromptLearner(backbone, CLASSES, prompt_length=77, **kw)
  short = pl.PromptLearner(backbone, CLASSES, **kw)
  assert full.layout.ids.shape == (4, 77) and short.layout.ids.shape == (4, 16)
  assert full.layout.init_ids.tolist() == short.layout.init_ids.tolist()
  assert len(full.layout.init_ids) == 4
  ctx = full.init_context(None, params) + 0.05  # moved off the word embeddings
  f77 = full.text_features(params, ctx, full.token_embeddings(params))
  f16 = short.text_features(params, ctx, short.token_embeddings(params))
  np.testing.assert_allclose(np.asarray(f16), np.asarray(f77), rtol=1e-5, atol=1e-6)


def test_prompt_learner_strips_sot_eot_and_pools_at_eot(tiny):
  """With the context set to the X tokens' own embeddings, the learned prompt is the plain
  prompt "X X X X {name}.", whose features encode_text computes from ids (argmax pooling)."""
  backbone, params = tiny
  learner = pl.PromptLearner(backbone, CLASSES, n_ctx=4, prompt_length=77)
  lay = learner.layout
  x_id = pl._token_ids(backbone, "X")
  assert x_id.tolist() == [lay.ids[0, 1]] and len(x_id) == 1
  assert (lay.ctx_positions == np.arange(1, 5)).all()
  assert lay.name_lens == tuple(len(pl._token_ids(backbone, c.replace("_", " "))) for c in CLASSES)
  ctx = tiny_clip_backbone.word_embeddings(params)[int(x_id[0])][None].repeat(4, 0)
  ours = learner.text_features(params, ctx, learner.token_embeddings(params))
  ids, _ = backbone.tokenize([f"X X X X {c.replace('_', ' ')}." for c in CLASSES], length=None)
  ref = backbone.module.apply({"params": params}, jnp.asarray(ids),
                              method=backbone.module.encode_text)
  np.testing.assert_allclose(np.asarray(l2_normalize(ours)), np.asarray(l2_normalize(ref)),
                             rtol=1e-5, atol=1e-6)


def test_random_backbone_of_the_clip_preset(tmp_path, monkeypatch):
  monkeypatch.setattr(setup.bc, "init_params", lambda cfg: "random params")  # skip the compile
  model_cfg = ml_collections.ConfigDict({"init": "", "preset": "tiny_clip",
                                        "compute_dtype": "float32"})
  backbone, params = setup.build_backbone(model_cfg, tmp_path, ["glioma", "meningioma"])
  assert backbone.cfg.family == "openai" and params == "random params"
  ids, mask = backbone.tokenize(["glioma", "meningioma"])
  assert (mask.sum(1) == 3).all() and (ids[:, 0] == 49406).all()
