"""Tokenizer vs open_clip's HFTokenizer on the same vocabulary, and pad-length invariance."""

import numpy as np
import pytest

from biomedjax.models.tokenizer import Tokenizer
from biomedjax.models.vocab import write_vocab
from tests.parity import openclip_fixture as fx

TEXTS = ["a photo of a glioma tumor.", "  Normal   BRAIN\tMRI  ", "caf\u00e9 &amp;amp; x-ray!",
         "unknownword qqq ### 123", ""]


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
  return write_vocab(tmp_path_factory.mktemp("vocab"), fx.WORDS, size=30522)


def test_ids_match_open_clip(vocab_dir):
  ours, _ = Tokenizer(vocab_dir, 256)(TEXTS)
  ref = fx.openclip_tokenizer(vocab_dir, 256)(TEXTS).numpy()
  np.testing.assert_array_equal(ours, ref)
  assert ours.shape == (len(TEXTS), 256) and ours.dtype == np.int32


def test_truncation_of_a_400_token_text(vocab_dir):
  text = " ".join(["glioma", "tumor", "brain", "scan"] * 100)  # 400 words, >= 400 tokens
  tok = Tokenizer(vocab_dir, 256)
  assert len(tok.hf(text)["input_ids"]) > 400
  ours, mask = tok([text])
  ref = fx.openclip_tokenizer(vocab_dir, 256)([text]).numpy()
  np.testing.assert_array_equal(ours, ref)
  assert mask.sum() == 256 and ours[0, -1] == 3  # [SEP] kept at the end, as HF truncates


def test_shorter_length_and_bucket(vocab_dir):
  tok = Tokenizer(vocab_dir, 256)
  full, _ = tok(TEXTS[:2])
  short, mask = tok(TEXTS[:2], length=16)
  np.testing.assert_array_equal(short, full[:, :16])
  np.testing.assert_array_equal(mask, (short != 0).astype(np.int32))
  bucketed, _ = tok(TEXTS[:2], length="bucket")
  assert bucketed.shape[1] % 16 == 0 and bucketed.shape[1] <= 256
  with pytest.raises(ValueError, match="more than length=4"):
    tok(TEXTS[:2], length=4)
