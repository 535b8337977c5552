"""OpenAI-CLIP family, tiny: open_clip ``CLIP`` and HF ``CLIPModel`` -> convert -> same outputs.

Runs the numerical mapping checks (in_proj packing, conv without bias, ln_pre/ln_post, causal
mask, EOT pooling, projections, QuickGELU) and the BPE token ids on every commit; the full-size
ViT-B/16 test repeats them at the real size.
"""

import json

import jax
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

import biomedjax
from convert import biomedclip as conv
from convert.openclip_config import ConversionError
from tests.parity import clip_fixture as fx

LONG = " ".join(["glioma", "tumor,", "brain", "scan"] * 30)  # > 77 tokens: truncated, EOT last
TEXTS = ["a photo of a glioma tumor.", "Normal   BRAIN\tMRI!", "caf\u00e9 &amp;amp; x-ray 123",
         "it's the patient's lung opacity (covid-19)", LONG, ""]


def _cos(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def _assert_close(ours, ref):
  ours, ref = np.asarray(ours), np.asarray(ref)
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
  assert _cos(ours, ref).min() > 0.999999


@pytest.fixture(scope="module")
def openclip_tiny(tmp_path_factory):
  """No BPE file in the folder: the vocabulary comes from the installed open_clip package."""
  src, torch_model = fx.make_openclip_checkpoint(tmp_path_factory.mktemp("src"), "tiny_clip",
                                                 seed=1)
  out = tmp_path_factory.mktemp("out") / "tiny_clip"
  assert conv.main(["--src", str(src), "--out", str(out)]) == 0
  return src, torch_model, out, biomedjax.load(out)


def test_family_config_and_manifest(openclip_tiny):
  _, _, out, m = openclip_tiny
  assert m.cfg.family == "openai" and m.cfg.text.context_length == 77
  assert m.cfg.vision.act == "quick_gelu" and m.cfg.vision.ln_eps == 1e-5
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["family"] == "openai" and manifest["source_layout"] == "open_clip"
  assert manifest["tokenizer_source"].endswith("bpe_simple_vocab_16e6.txt.gz")
  assert sorted(p.name for p in (out / "tokenizer").iterdir()) == [
      "bpe_config.json", "merges.txt", "vocab.json"]


def test_token_ids_match_open_clip_including_truncation(openclip_tiny):
  m = openclip_tiny[3]
  ids, mask = m.tokenize(TEXTS)
  ref = open_clip.tokenize(TEXTS).numpy()
  np.testing.assert_array_equal(ids, ref)
  assert ids.shape == (len(TEXTS), 77)
  assert mask[4].sum() == 77 and ids[4, -1] == 49407  # open_clip truncates, EOT forced last
  np.testing.assert_array_equal(mask.sum(1) - 1, ref.argmax(1))  # mask pooling = argmax pooling


def test_preprocess_matches_open_clip(openclip_tiny):
  m = openclip_tiny[3]
  transform = open_clip.image_transform(224, is_train=False, mean=m.cfg.image_mean,
                                        std=m.cfg.image_std)
  rng = np.random.default_rng(0)
  images = [Image.fromarray(rng.integers(0, 256, (300, 260, 3), np.uint8)),
            Image.fromarray(rng.integers(0, 256, (180, 400), np.uint8)).convert("L")]
  for im in images:
    np.testing.assert_allclose(m.preprocess(im), transform(im).permute(1, 2, 0).numpy(),
                               atol=1e-6)


def test_features_and_logits_match_open_clip(openclip_tiny):
  _, torch_model, _, m = openclip_tiny
  pixels = np.random.default_rng(0).normal(size=(3, 224, 224, 3)).astype(np.float32)
  ids, mask = m.tokenize(TEXTS)
  t_pix = torch.from_numpy(pixels).permute(0, 3, 1, 2)
  t_ids = torch.from_numpy(ids.astype(np.int64))
  with torch.no_grad():
    img_ref = torch_model.encode_image(t_pix).numpy()
    txt_ref = torch_model.encode_text(t_ids).numpy()
    logits_ref = torch_model.get_logits(t_pix, t_ids)[0].numpy()
  _assert_close(m.encode_image(pixels), img_ref)
  _assert_close(m.encode_text(ids, mask), txt_ref)
  _assert_close(m.encode_text(ids), txt_ref)  # no mask: argmax(ids), open_clip's own rule
  np.testing.assert_allclose(np.asarray(m.logits(pixels, ids, mask)), logits_ref, atol=1e-4)
  assert m.logit_scale == pytest.approx(np.exp(3.9), rel=1e-6)


def test_bucketed_length_gives_the_features_of_77_tokens(openclip_tiny):
  m = openclip_tiny[3]
  texts = TEXTS[:4]
  ids, mask = m.tokenize(texts)
  ids_b, mask_b = m.tokenize(texts, length="bucket")
  assert ids_b.shape[1] % 16 == 0 and ids_b.shape[1] < 77
  np.testing.assert_allclose(np.asarray(m.encode_text(ids_b, mask_b)),
                             np.asarray(m.encode_text(ids, mask)), rtol=1e-5, atol=1e-6)


def test_safetensors_and_bpe_file_in_the_folder(openclip_tiny, tmp_path):
  """The same weights (same seed) as .safetensors, the BPE file beside them: the same model."""
  src, _ = fx.make_openclip_checkpoint(tmp_path / "src", "tiny_clip", seed=1, safetensors=True,
                                       bpe_in_folder=True)
  out = tmp_path / "out"
  conv.convert(str(src), out)
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["tokenizer_source"] == f"open_clip:{src / fx.OPENCLIP_BPE.name}"
  m, ref = biomedjax.load(out), openclip_tiny[3]
  for a, b in zip(jax.tree.leaves(m.params), jax.tree.leaves(ref.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(m.tokenize(TEXTS)[0], ref.tokenize(TEXTS)[0])


# -- HuggingFace CLIPModel (patch 32) ------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_tiny(tmp_path_factory):
  src, torch_model = fx.make_hf_checkpoint(tmp_path_factory.mktemp("hf_src"), seed=2)
  out = tmp_path_factory.mktemp("hf_out") / "hf_clip"
  assert conv.main(["--src", str(src), "--out", str(out)]) == 0
  return src, torch_model, out, biomedjax.load(out)


def test_hf_clip_matches_transformers(hf_tiny):
  src, torch_model, out, m = hf_tiny
  assert m.cfg.family == "openai" and m.cfg.vision.patch_size == 32 and m.cfg.embed_dim == 24
  assert json.loads((out / "manifest.json").read_text())["source_layout"] == "hf"
  texts = TEXTS[:4]
  ids, mask = m.tokenize(texts)
  from transformers import CLIPTokenizer
  hf_tok = CLIPTokenizer(str(src / "vocab.json"), str(src / "merges.txt"))
  for row, n, text in zip(ids, mask.sum(1), texts):
    if "&amp;" not in text:  # HF's cleaning skips open_clip's double HTML unescape
      assert row[:n].tolist() == hf_tok(text)["input_ids"], text
  pixels = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype(np.float32)
  t_pix = torch.from_numpy(pixels).permute(0, 3, 1, 2)
  t_ids, t_mask = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))
  with torch.no_grad():
    img_ref = fx.features(torch_model.get_image_features(pixel_values=t_pix)).numpy()
    txt_ref = fx.features(torch_model.get_text_features(input_ids=t_ids,
                                                        attention_mask=t_mask)).numpy()
    logits_ref = torch_model(input_ids=t_ids, attention_mask=t_mask,
                             pixel_values=t_pix).logits_per_image.numpy()
  _assert_close(m.encode_image(pixels), img_ref)
  _assert_close(m.encode_text(ids, mask), txt_ref)
  np.testing.assert_allclose(np.asarray(m.logits(pixels, ids, mask)), logits_ref, atol=1e-4)
  assert m.logit_scale == pytest.approx(np.exp(4.2), rel=1e-6)


# -- bad input ------------------------------------------------------------------------------------

def _fails(src, out, match):
  with pytest.raises(ConversionError, match=match):
    conv.convert(str(src), out)
  assert not out.exists()
  assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_unknown_family_and_shape_mismatch_name_the_key(tmp_path):
  src, _ = fx.make_openclip_checkpoint(tmp_path / "src", "tiny_clip", seed=5, safetensors=True)
  cfg_file = src / "open_clip_config.json"
  good = json.loads(cfg_file.read_text())
  bad = json.loads(json.dumps(good))
  bad["model_cfg"]["vision_cfg"]["timm_model_name"] = "vit_base_patch16_224"
  cfg_file.write_text(json.dumps(bad))
  _fails(src, tmp_path / "out", r"model_cfg\.vision_cfg\.timm_model_name is set but not")
  bad = json.loads(json.dumps(good))
  bad["model_cfg"]["vision_cfg"]["attentional_pool"] = True
  cfg_file.write_text(json.dumps(bad))
  _fails(src, tmp_path / "out", r"vision_cfg\.attentional_pool=True unsupported")
  bad = json.loads(json.dumps(good))
  bad["model_cfg"]["text_cfg"]["width"] = 96
  bad["model_cfg"]["text_cfg"]["heads"] = 2
  cfg_file.write_text(json.dumps(bad))
  _fails(src, tmp_path / "out", r"shape mismatch for token_embedding\.weight \(49408, 64\)")
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "keep").write_text("old")
  cfg_file.write_text(json.dumps(good))
  with pytest.raises(ConversionError, match="exists; pass --force"):
    conv.convert(str(src), tmp_path / "out")
  assert (tmp_path / "out" / "keep").read_text() == "old"


def test_hf_folder_of_another_model_type_names_the_key(tmp_path):
  src = tmp_path / "siglip"
  src.mkdir()
  (src / "config.json").write_text(json.dumps({"model_type": "siglip"}))
  (src / "model.safetensors").write_bytes(b"")
  _fails(src, tmp_path / "out", r"config\.json: model_type='siglip'; only a HuggingFace CLIPModel")


def test_converted_config_with_an_unknown_family_names_the_key(openclip_tiny, tmp_path):
  import shutil
  out = tmp_path / "copy"
  shutil.copytree(openclip_tiny[2], out)
  cfg = json.loads((out / "config.json").read_text())
  cfg["family"] = "siglip"
  (out / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match=r"config\.json: model config 'family'='siglip'"):
    biomedjax.load(out)
