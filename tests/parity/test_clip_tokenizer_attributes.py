"""Every released BioMedVR attribute sentence fits CLIP's 77-token context with the real BPE
vocabulary, so open_clip's truncation never changes one (the reference's ``clip.tokenize``
would raise instead). The vocabulary is open_clip's own file, read without importing open_clip."""

import json

import numpy as np
import pytest

from biomedjax.models import bpe
from biomedjax.models.tokenizer import clean
from convert.tokenizer_files import installed_openclip_bpe


def test_released_attribute_sentences_fit_77_tokens(shared_dir, tmp_path):
  files = sorted((shared_dir / "data" / "biomedvr" / "attributes").glob("*.json"))
  if not files:
    pytest.skip("no BioMedVR attribute files under shared/data/biomedvr/attributes")
  tok = bpe.BPETokenizer(bpe.write_openclip_vocab(installed_openclip_bpe(), tmp_path), 77)
  sentences = [s for f in files for v in json.loads(f.read_text()).values() for s in v]
  assert len(sentences) > 100
  lengths = [len(tok.encode(clean(s).lower())) for s in sentences]  # before SOT/EOT, untruncated
  worst = int(np.argmax(lengths))
  assert lengths[worst] <= 75, f"{sentences[worst]!r} has {lengths[worst]} BPE tokens (> 75)"
  assert min(lengths) >= 1
