"""The ``medclip`` family without PyTorch: config, tokenizer, pooling and logit-scale facts of the
random-weight tiny preset (parity with MedCLIP's code: tests/parity/test_medclip.py)."""

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

from biomedjax.methods.base import Backbone
from biomedjax.models import biomedclip as bc
from biomedjax.models import config as model_config
from biomedjax.models import families
from biomedjax.models.clip import CLIP
from tests.tiny_backbone import CLASSNAMES, WORDS


@pytest.fixture(scope="module")
def tiny_medclip(tmp_path_factory):
  cfg = model_config.tiny_medclip()
  tok = families.random_tokenizer(cfg, tmp_path_factory.mktemp("medclip_vocab"),
                                  [w for w in WORDS if not w.startswith("##")])
  return Backbone(CLIP(cfg), tok), bc.init_params(cfg, 0)


def test_config_round_trip_and_the_vision_type_is_checked():
  cfg = model_config.medclip()
  assert model_config.CLIPConfig.from_json(cfg.to_json()) == cfg
  raw = json.loads(cfg.to_json())
  assert raw["vision"]["depths"] == [2, 2, 6, 2] and raw["text"]["context_length"] == 25
  with pytest.raises(ValueError, match="family 'medclip' needs a SwinConfig"):
    dataclasses.replace(cfg, vision=model_config.VisionConfig())
  with pytest.raises(ValueError, match=r"'text.pool'='cls': family 'medclip' pools at"):
    dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, pool="cls"))


def test_prompts_always_pad_to_the_context_length(tiny_medclip):
  backbone, _ = tiny_medclip
  ids, mask = backbone.tokenize(["a photo of a glioma tumor."], length="bucket")
  assert ids.shape == (1, 25) and mask.sum() == 9  # [CLS] 6 words . [SEP]: no bucketing


def test_pads_enter_the_mean_so_the_length_is_part_of_the_model(tiny_medclip):
  """modeling_medclip.py:37 averages over the padded length: 25 and 32 tokens differ."""
  backbone, params = tiny_medclip
  texts = [c.replace("_", " ") for c in CLASSNAMES]
  a = backbone.text_features(params, *backbone.tokenize(texts))
  b = backbone.text_features(params, *backbone.tokenize(texts, length=32))
  assert a.shape == (4, 512) and not np.allclose(a, b, atol=1e-4)


def test_model_logits_clamp_the_scale_methods_read_it_raw(tiny_medclip):
  backbone, params = tiny_medclip
  params = {**params, "logit_scale": jnp.float32(5.0)}
  scale = backbone.module.apply({"params": params}, method=CLIP.scale)
  assert float(scale) == pytest.approx(np.exp(4.6052), rel=1e-6)  # modeling_medclip.py:229
  assert float(backbone.logit_scale(params)) == pytest.approx(np.exp(5.0), rel=1e-6)
  pixels = np.zeros((1, 56, 56, 3), np.uint8)
  assert backbone.image_features(params, pixels).shape == (1, 512)


def test_resnet_variant_preset_tower_and_statistics():
  """MedCLIP-ResNet (vision.arch "resnet50"): torchvision layout with a bias-free fc to 512 and
  BatchNorm statistics in the backbone pytree, set from random pixels (not the 0 / 1 init)."""
  cfg = model_config.tiny_medclip_resnet()
  assert model_config.CLIPConfig.from_json(cfg.to_json()) == cfg
  assert model_config.medclip_resnet().vision.depths == (3, 4, 6, 3)
  with pytest.raises(ValueError, match=r"'vision.depths'=\[2, 2\]: MedCLIP's ResNet needs 4"):
    dataclasses.replace(cfg.vision, depths=(2, 2))
  with pytest.raises(ValueError, match=r"'vision.arch'='vit': use one of"):
    dataclasses.replace(cfg.vision, arch="vit")
  params = bc.init_params(cfg, 0)
  visual = params["visual"]
  assert "kernel" in visual["fc"] and "bias" not in visual["fc"]  # modeling_medclip.py:53
  assert visual["fc"]["kernel"].shape == (256, 512)  # 8 * 8 * 4 channels after layer4
  assert visual["conv1"]["kernel"].shape[:2] == (7, 7)
  assert float(np.abs(params["batch_stats"]["visual"]["bn1"]["mean"]).max()) > 0

