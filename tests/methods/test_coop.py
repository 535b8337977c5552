"""CoOp and its prompt learner on the tiny preset: layout, init, loss, training touches only ctx.

The prompt embeddings are checked against a plain-numpy rebuild of the reference
``PromptLearner.forward`` (token prefix / ctx / class / suffix concatenation at 256 tokens), so
the build-time rearrangement of ids and the device-side scatter are tested independently.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy.special import log_softmax

from biomedjax.methods import coop
from biomedjax.methods import prompt_learner as pl
from biomedjax.methods.base import Task
from tests import tiny_backbone

CLASSES = tiny_backbone.CLASSNAMES


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return tiny_backbone.make(tmp_path_factory.mktemp("vocab"))


def reference_prompts(backbone, params, ctx, n_ctx, position, ctx_init="", length=256,
                      bert_name_lens=False):
  """numpy transcription of CoOp's PromptLearner (init + forward) at the reference's 256 tokens.

  ``bert_name_lens``: the BiomedCLIP trainers' name length, ``len(tokenizer(name))`` of the one
  padded row their tokenizer returns, i.e. 1 for every class."""
  hf = backbone.tokenizer.hf
  names = [c.replace("_", " ") for c in CLASSES]
  prefix = ctx_init or " ".join(["X"] * n_ctx)
  ids = np.zeros((len(names), length), np.int64)
  for i, n in enumerate(names):
    row = hf(f"{prefix} {n}.")["input_ids"]
    ids[i, :len(row)] = row
  emb = np.asarray(tiny_backbone.word_embeddings(params))[ids]
  name_lens = [len(hf(n, add_special_tokens=False)["input_ids"]) for n in names]
  if bert_name_lens:
    name_lens = [len(backbone.tokenize([n], length=length)[0][None]) for n in names]
  ctx = np.broadcast_to(np.asarray(ctx), (len(names), n_ctx, emb.shape[-1]))
  token_prefix, token_suffix = emb[:, :1], emb[:, 1 + n_ctx:]
  half = n_ctx // 2
  out = []
  for i, nl in enumerate(name_lens):
    p, c, s = token_prefix[i], ctx[i], token_suffix[i]
    if position == "end":
      parts = [p, c, s]
    elif position == "middle":
      parts = [p, c[:half], s[:nl], c[half:], s[nl:]]
    else:
      parts = [p, s[:nl], c, s[nl:]]
    out.append(np.concatenate(parts))
  return np.stack(out), ids != 0


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("csc", [False, True])
def test_prompt_embeddings_match_reference_layout(tiny, position, csc):
  backbone, params = tiny
  learner = pl.PromptLearner(backbone, CLASSES, n_ctx=4, csc=csc,
                             class_token_position=position)
  ctx = learner.init_context(jax.random.key(1), params)
  assert ctx.shape == ((4, 4, 64) if csc else (4, 64))
  got = np.asarray(learner.prompt_embeddings(ctx, learner.token_embeddings(params)))
  ref, ref_mask = reference_prompts(backbone, params, ctx, 4, position)
  length = learner.layout.ids.shape[1]
  assert length == 16 and got.shape == (4, 16, 64)  # bucketed, not 256
  np.testing.assert_array_equal(got, ref[:, :length])
  np.testing.assert_array_equal(learner.layout.mask, ref_mask[:, :length])
  assert not ref_mask[:, length:].any()
  # Text features at 16 tokens equal the reference's at 256 (pads are masked).
  feats = learner.text_features(params, ctx, learner.token_embeddings(params))
  feats_ref = backbone.text_features_from_embeds(params, jnp.asarray(ref), jnp.asarray(ref_mask))
  np.testing.assert_allclose(feats, feats_ref, rtol=1e-5, atol=1e-6)


def test_ctx_init_uses_word_embeddings_and_validates_count(tiny):
  backbone, params = tiny
  learner = pl.PromptLearner(backbone, CLASSES, 4, "a photo of a", class_token_position="middle")
  ids = backbone.tokenizer.hf("a photo of a", add_special_tokens=False)["input_ids"]
  table = np.asarray(tiny_backbone.word_embeddings(params))
  np.testing.assert_array_equal(learner.init_context(jax.random.key(0), params), table[ids])
  assert learner.layout.prompts[1] == "a photo of a meningioma tumor."
  csc = pl.PromptLearner(backbone, CLASSES, 4, "a photo of a", csc=True)
  np.testing.assert_array_equal(csc.init_context(jax.random.key(0), params),
                                np.broadcast_to(table[ids], (4, 4, 64)))
  with pytest.raises(ValueError, match=r"ctx_init 'a photo of' has 3 tokens but n_ctx=4"):
    pl.PromptLearner(backbone, CLASSES, 4, "a photo of")
  with pytest.raises(ValueError, match="class_token_position 'back'"):
    pl.PromptLearner(backbone, CLASSES, 4, class_token_position="back")


def test_random_init_statistics(tiny):
  backbone, params = tiny
  learner = pl.PromptLearner(backbone, CLASSES, 16, csc=True)
  ctx = np.asarray(learner.init_context(jax.random.key(0), params))
  assert ctx.shape == (4, 16, 64)
  assert abs(ctx.mean()) < 0.002 and abs(ctx.std() - 0.02) < 0.001


def test_fixed_prompt_length_and_config_errors(tiny):
  backbone, _ = tiny
  task = Task(CLASSES)
  m = coop.build(backbone, task, ml_collections.ConfigDict(dict(name="coop", prompt_length=40)))
  assert m.learner.layout.ids.shape == (4, 40)
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['n_cxt'\]"):
    coop.build(backbone, task, {"n_cxt": 4})


def _batch(n=4, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 256, size=(n, 224, 224, 3), dtype=np.uint8),
          "label": np.arange(n, dtype=np.int32) % len(CLASSES)}


def test_loss_and_logits_match_numpy(tiny):
  backbone, params = tiny
  method = coop.build(backbone, Task(CLASSES), {"ctx_init": "", "class_token_position": "front"})
  frozen = {"backbone": params, **method.prepare(params)}
  trainable = method.init(jax.random.key(2), frozen)
  batch = _batch()
  loss, aux = method.loss(trainable, frozen, tiny_backbone.with_features(method, batch, frozen),
                          jax.random.key(0))
  ref, ref_mask = reference_prompts(backbone, params, trainable["ctx"], 4, "front")
  txt = np.asarray(backbone.text_features_from_embeds(params, jnp.asarray(ref),
                                                      jnp.asarray(ref_mask)), np.float64)
  img = np.asarray(backbone.image_features(params, batch["image"]), np.float64)
  cos = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (
      txt / np.linalg.norm(txt, axis=1, keepdims=True)).T
  logits = np.exp(float(params["logit_scale"])) * cos
  ref_loss = -log_softmax(logits, axis=1)[np.arange(4), batch["label"]].mean()
  np.testing.assert_allclose(method.logits(trainable, frozen, img.astype(np.float32)), logits,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  assert aux["accuracy"] == np.mean(logits.argmax(1) == batch["label"])


@pytest.mark.parametrize("position", ["middle", "front"])
def test_reference_name_length_quirk(tiny, position):
  """name_length="reference": only the first token of each class name moves (the trainers'
  length-1 quirk); the default moves the whole name, and the two differ on multi-word names."""
  backbone, params = tiny
  quirk = pl.PromptLearner(backbone, CLASSES, n_ctx=4, class_token_position=position,
                           name_length="reference")
  ctx = quirk.init_context(jax.random.key(1), params)
  got = np.asarray(quirk.prompt_embeddings(ctx, quirk.token_embeddings(params)))
  ref, _ = reference_prompts(backbone, params, ctx, 4, position, bert_name_lens=True)
  np.testing.assert_array_equal(got, ref[:, :got.shape[1]])
  true = pl.PromptLearner(backbone, CLASSES, n_ctx=4, class_token_position=position)
  assert not np.array_equal(true.layout.ids, quirk.layout.ids)
  with pytest.raises(ValueError, match="name_length 'first'"):
    pl.PromptLearner(backbone, CLASSES, name_length="first")
