"""Image- and text-encoding throughput: biomedjax (Flax) vs open_clip (PyTorch), one run.

Both sides hold the same full-size weights (random, converted in memory by the real mapping):
BiomedCLIP (``--model biomedclip``), OpenAI CLIP ViT-B/16 as open_clip's ``ViT-B-16-quickgelu``
(``--model clip_vit_b16``), OpenAI CLIP RN50 as open_clip's ``RN50`` (``--model clip_rn50``),
PMC-CLIP as BiomedCoOp builds it (``--model pmcclip``: open_clip's ModifiedResNet-50 and a
transformers BertModel, ``tests/parity/pmcclip_fixture.py``) or MedCLIP-ViT (``--model medclip``:
HF SwinModel + BertModel with MedCLIP's forward code, tests/parity/reference_medclip.py); the
ResNet towers in eval mode; fp32, batch 32, warm (compiled / first call done) before timing; the
median of ``--repeats`` timed batches is reported. Text is padded to the context length on both
sides (256 for BiomedCLIP, 77 for CLIP: what open_clip does, 25 for MedCLIP: CalibPrompt's);
the Flax line at a bucketed length
shows what prompt learning uses.

  python benchmarks/encode.py [--model biomedclip|clip_vit_b16|clip_rn50|pmcclip|medclip|medclip_resnet]
                              [--batch 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.timing import median_seconds  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from biomedjax.models import biomedclip as bc  # noqa: E402
from biomedjax.models import config as model_config  # noqa: E402
from convert.biomedclip import map_state_dict  # noqa: E402
from tests.parity import openclip_fixture as fx  # noqa: E402



def _biomedclip():
  cfg = model_config.biomedclip()
  with tempfile.TemporaryDirectory() as tmp:
    src, torch_model = fx.make_checkpoint(pathlib.Path(tmp), "biomedclip", seed=0)
    sd = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    from biomedjax.models.tokenizer import Tokenizer
    tok = Tokenizer(src, 256)
  return cfg, torch_model, sd, tok


def _openclip(preset):
  """open_clip's own ``CLIP`` with its published config (``ViT-B-16-quickgelu``, ``RN50``)."""
  import open_clip
  from biomedjax.models import bpe
  from tests.parity import clip_fixture
  cfg = model_config.PRESETS[preset]()
  torch_model = open_clip.model.CLIP(**clip_fixture.openclip_model_cfg(preset)).eval()
  clip_fixture.perturb_(torch_model, 0)
  sd = {k: v.numpy() for k, v in torch_model.state_dict().items()}
  with tempfile.TemporaryDirectory() as tmp:
    tok = bpe.BPETokenizer(bpe.write_openclip_vocab(clip_fixture.OPENCLIP_BPE, tmp), 77)
  return cfg, torch_model, sd, tok


class _MedCLIPTorch(torch.nn.Module):
  """The reference MedCLIP behind open_clip's two entry points (unnormalised features)."""

  def __init__(self, model):
    super().__init__()
    self.model = model

  def encode_image(self, pixels):
    return self.model.vision_model(pixels)

  def encode_text(self, ids):
    return self.model.text_model(ids, (ids != 0).long())


def _medclip(resnet: bool = False):
  """MedCLIP-ViT, or with ``resnet`` MedCLIP-ResNet (torchvision resnet50 whose fc -> 512)."""
  from biomedjax.models.medclip import PaddedTokenizer
  from tests.parity import medclip_fixture, reference_medclip as ref
  cfg = model_config.medclip_resnet() if resnet else model_config.medclip()
  torch.manual_seed(0)
  torch_model = ref.MedCLIP(None if resnet else ref.SWIN_TINY, ref.BIO_CLINICAL_BERT)
  ref.perturb_(torch_model, 0)
  torch_model.eval()
  sd = {k: v.numpy() for k, v in ref.release_state_dict(torch_model).items()}
  with tempfile.TemporaryDirectory() as tmp:
    bert = medclip_fixture.write_bert_folder(pathlib.Path(tmp), ref.BIO_CLINICAL_BERT)
    tok = PaddedTokenizer(bert, cfg.text.context_length)
  return cfg, _MedCLIPTorch(torch_model), sd, tok


class _PMCCLIPTorch:
  """The reference's PMC-CLIP forward behind open_clip's two method names."""

  def __init__(self, ref):
    self.ref = ref

  def encode_image(self, x):
    return self.ref.image_features(x)

  def encode_text(self, ids):
    return self.ref.text_features(ids, (ids != 0).long())


def _pmcclip():
  from biomedjax.models import families
  from convert import pmcclip
  from tests.parity import pmcclip_fixture
  cfg = model_config.pmcclip()
  with tempfile.TemporaryDirectory() as tmp:
    ckpt, tok_dir, ref = pmcclip_fixture.make_files(pathlib.Path(tmp), "pmcclip", seed=0)
    sd = pmcclip.read_state_dict(ckpt)
    tok = families.load_tokenizer(tok_dir, cfg)
  return cfg, _PMCCLIPTorch(ref), sd, tok


LAYOUT = {"pmcclip": "pmcclip"}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--model", choices=("biomedclip", "clip_vit_b16", "clip_rn50", "pmcclip",
                                      "medclip", "medclip_resnet"),
                  default="biomedclip")
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--repeats", type=int, default=5)
  args = ap.parse_args()
  jax.config.update("jax_default_matmul_precision", "highest")
  builders = {"biomedclip": _biomedclip, "pmcclip": _pmcclip, "medclip": _medclip,
              "medclip_resnet": lambda: _medclip(resnet=True),
              "clip_vit_b16": lambda: _openclip("clip_vit_b16"),
              "clip_rn50": lambda: _openclip("clip_rn50")}
  cfg, torch_model, sd, tok = builders[args.model]()
  m = bc.BiomedCLIP(cfg, jax.device_put(map_state_dict(sd, cfg, layout=LAYOUT.get(args.model))),
                    tok)
  del sd
  context = cfg.text.context_length

  b = args.batch
  pixels = np.random.default_rng(0).normal(size=(b, 224, 224, 3)).astype(np.float32)
  t_pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
  texts = [f"a photo of a {w} tumor with cyst in the brain." for w in fx.WORDS[:b]]
  ids, mask = m.tokenize(texts)
  ids_b, mask_b = m.tokenize(texts, length="bucket")
  t_ids = torch.from_numpy(ids.astype(np.int64))

  rows = []
  with torch.inference_mode():
    t_img = median_seconds(lambda: torch_model.encode_image(t_pixels), args.repeats)
    t_txt = median_seconds(lambda: torch_model.encode_text(t_ids), args.repeats)
  j_img = median_seconds(lambda: m.encode_image(pixels).block_until_ready(), args.repeats)
  j_txt = median_seconds(lambda: m.encode_text(ids, mask).block_until_ready(), args.repeats)
  j_txt_b = median_seconds(lambda: m.encode_text(ids_b, mask_b).block_until_ready(),
                            args.repeats)
  rows.append(("image encoding", b / t_img, b / j_img))
  rows.append((f"text encoding ({context} tokens)", b / t_txt, b / j_txt))
  rows.append((f"text encoding (Flax at {ids_b.shape[1]} tokens)", b / t_txt, b / j_txt_b))
  print(f"model {args.model}, device: {jax.devices()[0].device_kind}, torch threads "
        f"{torch.get_num_threads()}, batch {b}, median of {args.repeats}")
  print(f"{'':34s} {'open_clip/s':>12s} {'biomedjax/s':>12s} {'ratio':>7s}")
  for name, ref, ours in rows:
    print(f"{name:34s} {ref:12.1f} {ours:12.1f} {ours / ref:6.2f}x")


if __name__ == "__main__":
  main()
