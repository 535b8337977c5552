"""PubMedCLIP, PLIP and QuiltNet through the ``openai`` family: each built in its published
config with random weights, saved as a user downloads it, converted by the real CLI, compared
with PyTorch; plus one method (CoOp) trained on a converted copy of every Med-VLM layout.

* PubMedCLIP (flaviagiammarino/pubmed-clip-vit-base-patch32) and PLIP (vinid/plip) are HF
  ``CLIPModel`` fine-tunes of openai/clip-vit-base-patch32 and publish its config (written out in
  ``HF_VIT_B32``); one full-size checkpoint in that layout proves both (converted as "PLIP").
* QuiltNet-B-32 (wisdomik/QuiltNet-B-32) is an open_clip hub folder; open_clip's pretrained table
  has no entry for it, and its model card loads it as open_clip ``ViT-B-32`` (GELU; the
  ``-quickgelu`` variant is a different config). CalibPrompt instead loads ``quiltnet_b32.pt``
  with OpenAI CLIP's ``build_model`` (trainers/classification/coop.py:38-58), whose blocks use
  QuickGELU (models/clip/model.py:162-175): the same tensors, converted with ``--preset quiltnet``,
  give that model (checked at tiny size against open_clip with ``quick_gelu=True`` on the same
  weights).
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import open_clip
import pytest
import torch

import biomedjax
from biomedjax.methods.base import Backbone
from biomedjax.models import config as model_config
from biomedjax.train import loop
from convert import biomedclip as convert_cli
from tests import tiny_backbone
from tests.parity import clip_fixture as cf
from tests.parity import medclip_fixture as mf
from tests.methods.test_method_contract import CLASSES, _config
from tests.tiny_backbone import engine_steps

pytestmark = pytest.mark.slow

TEXTS = ["an H&E image of adipose tissue.", "an H&E image of colorectal adenocarcinoma."]
# openai/clip-vit-base-patch32's config.json, which PubMedCLIP and PLIP keep
HF_VIT_B32 = dict(
    text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                     num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77,
                     hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=0,
                     eos_token_id=2, pad_token_id=1),
    vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, image_size=224, patch_size=32,
                       hidden_act="quick_gelu", layer_norm_eps=1e-5),
    projection_dim=512, logit_scale_init_value=2.6592)
OPENCLIP_B32 = pathlib.Path(open_clip.__file__).parent / "model_configs" / "ViT-B-32.json"


def _convert(src, out, *extra):
  """The converter's command line (``python -m convert``'s ``main``), in this process."""
  assert convert_cli.main(["--src", str(src), "--out", str(out), *extra]) == 0
  return biomedjax.load(out)


def _cos(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def _check(m, img_ref, txt_ref, logits_ref, pixels, ids, mask):
  img, txt, logits = cf.encode_all(m, pixels, ids, mask)
  assert _cos(img, img_ref).min() > 0.99999 and _cos(txt, txt_ref).min() > 0.99999
  assert np.abs(logits - logits_ref).max() / np.abs(logits_ref).max() < 1e-4


def _openclip_refs(model, pixels, ids):
  """open_clip's image features, text features and logits_per_image."""
  t_pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2)
  t_ids = torch.from_numpy(ids.astype(np.int64))
  with torch.no_grad():
    return (model.encode_image(t_pixels).numpy(), model.encode_text(t_ids).numpy(),
            model.get_logits(t_pixels, t_ids)[0].numpy())


@pytest.fixture(scope="module")
def pixels():
  return np.random.default_rng(2).normal(size=(2, 224, 224, 3)).astype(np.float32)


def test_plip_and_pubmedclip_hf_clipmodel(tmp_path, pixels):
  from transformers import CLIPConfig, CLIPModel
  torch.manual_seed(0)
  model = CLIPModel(CLIPConfig(**HF_VIT_B32))
  cf.perturb_(model, 0, logit_scale=4.6)
  model.eval()
  src = tmp_path / "plip"
  model.save_pretrained(str(src), safe_serialization=True)
  cf.write_hf_tokenizer_files(src)
  m = _convert(src, tmp_path / "out", "--name", "PLIP")
  assert mf.manifest(tmp_path / "out")["source_model"] == "PLIP"
  assert m.cfg.vision.patch_size == 32 and m.cfg.vision.act == "quick_gelu"
  ids, mask = m.tokenize(TEXTS)
  t_pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2)
  t_ids = torch.from_numpy(ids.astype(np.int64))
  with torch.no_grad():
    out = model(input_ids=t_ids, pixel_values=t_pixels, attention_mask=torch.from_numpy(mask))
    img_ref = cf.features(model.get_image_features(pixel_values=t_pixels)).numpy()
    txt_ref = cf.features(model.get_text_features(input_ids=t_ids)).numpy()
  _check(m, img_ref, txt_ref, out.logits_per_image.numpy(), pixels, ids, mask)


def test_quiltnet_open_clip_folder(tmp_path, pixels):
  model_cfg = json.loads(OPENCLIP_B32.read_text())
  torch.manual_seed(1)
  model = open_clip.model.CLIP(**model_cfg)  # ViT-B-32: nn.GELU
  cf.perturb_(model, 1)
  model.eval()
  src = tmp_path / "QuiltNet-B-32"
  src.mkdir()
  torch.save(model.state_dict(), src / "open_clip_pytorch_model.bin")
  (src / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {
      "mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD)}}))
  m = _convert(src, tmp_path / "out")
  assert mf.manifest(tmp_path / "out")["source_model"] == "QuiltNet-B-32/open_clip_pytorch_model.bin"
  assert m.cfg.vision.act == m.cfg.text.act == "gelu"
  ids, mask = m.tokenize(TEXTS)
  np.testing.assert_array_equal(ids, open_clip.tokenize(TEXTS).numpy())
  _check(m, *_openclip_refs(model, pixels, ids), pixels, ids, mask)


def test_calibprompt_quiltnet_pt_runs_with_quickgelu(tmp_path, pixels):
  """CalibPrompt's form: an OpenAI-layout ``quiltnet_b32.pt`` run with QuickGELU, whatever the
  weights were trained with; tiny here (``--preset tiny_clip`` is ``quiltnet``'s layout at tiny
  widths), the full-size GELU folder above covers the size."""
  assert model_config.quiltnet() == model_config.clip_vit_b32()
  assert model_config.quiltnet().vision.act == "quick_gelu"
  model_cfg = cf.openclip_model_cfg("tiny_clip")
  torch.manual_seed(2)
  gelu = open_clip.model.CLIP(**{**model_cfg, "quick_gelu": False})
  cf.perturb_(gelu, 2)
  pt = tmp_path / "quiltnet" / "quiltnet_b32.pt"
  pt.parent.mkdir()
  torch.save(gelu.state_dict(), pt)
  q = _convert(pt, tmp_path / "out_pt", "--preset", "tiny_clip", "--name", "QuiltNet")
  assert q.cfg.vision.act == "quick_gelu"
  quick = open_clip.model.CLIP(**model_cfg)  # quick_gelu=True: OpenAI's build_model
  quick.load_state_dict(gelu.state_dict())
  quick.eval()
  ids, mask = q.tokenize(TEXTS)
  _check(q, *_openclip_refs(quick, pixels, ids), pixels, ids, mask)


def _tiny_sources(root: pathlib.Path):
  """One tiny converted folder per Med-VLM layout: MedCLIP's release, an HF CLIPModel
  (PubMedCLIP/PLIP), an open_clip ViT with GELU (QuiltNet)."""
  release, bert_dir, _ = mf.make_release(root / "medclip")
  hf, _ = cf.make_hf_checkpoint(root / "hf")
  oc, _ = cf.make_openclip_checkpoint(root / "oc", "tiny_clip")
  cfg_file = oc / "open_clip_config.json"
  raw = json.loads(cfg_file.read_text())
  raw["model_cfg"]["quick_gelu"] = False
  cfg_file.write_text(json.dumps(raw))
  return {"medclip": (release, "--tokenizer", str(bert_dir), "--preset", "tiny_medclip"),
          "plip": (hf,), "quiltnet": (oc,)}


def test_coop_trains_on_each_converted_layout(tmp_path):
  for name, (src, *extra) in _tiny_sources(tmp_path).items():
    m = _convert(src, tmp_path / f"{name}_out", *extra)
    backbone = Backbone(m.module, m.tokenizer)
    config = _config("coop", tmp_path)
    method = loop.build_method(config, backbone, CLASSES, "multiclass")
    frozen = {"backbone": m.params, **method.prepare(m.params)}
    size = m.cfg.vision.image_size
    batch = jax.tree.map(jnp.asarray, tiny_backbone.image_batch(4, len(CLASSES), size=size))
    trainable = method.init(jax.random.key(0), frozen)
    _, _, losses = engine_steps(method, trainable, loop.split_frozen(method, frozen), batch)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], (name, losses)
