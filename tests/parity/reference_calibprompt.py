"""PyTorch transcription of CalibPrompt's BiomedCLIP prompt learner and objective.

From ``trainers/classification/coop_biomedclip.py`` of ``iabh1shekbasu/CalibPrompt``: prompts
"X ... X {name}." tokenized at 256; the frozen prefix ([CLS]) and suffix (positions 1 + n_ctx..)
are the output of ``text.transformer.embeddings(input_ids=...)`` (word + position + token type,
LayerNorm); [prefix, ctx, suffix] goes to ``text.transformer(inputs_embeds=..., attention_mask)``,
then the [CLS] pooler, the projection and L2 norm. ``embed_mode="word_embeddings"`` uses the word
embeddings instead (the variant biomedjax offers as an option). Loss LS + SMAC + w_AS * AS.
"""

import numpy as np
import torch
import torch.nn.functional as F

from tests.parity import reference_calib_losses as ref_losses


class TorchCalibPrompt(torch.nn.Module):

  def __init__(self, model, tokenizer, classnames, ctx, embed_mode="full_embeddings"):
    super().__init__()
    self.model = model
    n_ctx = ctx.shape[0]
    names = [c.replace("_", " ") for c in classnames]
    prompts = [" ".join(["X"] * n_ctx) + " " + n + "." for n in names]
    tokens = tokenizer(prompts, context_length=256)
    self.mask = (tokens != model.text.config.pad_token_id).long()
    emb = model.text.transformer.embeddings
    with torch.no_grad():
      full = emb(input_ids=tokens) if embed_mode == "full_embeddings" else emb.word_embeddings(
          tokens)
    self.register_buffer("token_prefix", full[:, :1, :])
    self.register_buffer("token_suffix", full[:, 1 + n_ctx:, :])
    self.ctx = torch.nn.Parameter(torch.from_numpy(np.array(ctx)))

  def text_features(self):
    n_cls = self.token_prefix.shape[0]
    ctx = self.ctx.unsqueeze(0).expand(n_cls, -1, -1)
    prompts = torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
    text = self.model.text
    out = text.transformer(inputs_embeds=prompts, attention_mask=self.mask)
    return F.normalize(text.proj(text.pooler(out, self.mask)), dim=-1)

  def forward(self, image_nchw):
    with torch.no_grad():
      img = F.normalize(self.model.visual(image_nchw), dim=-1)
    text = self.text_features()
    return self.model.logit_scale.exp() * img @ text.t(), text


def reference_loss(logits, text, label, alpha=0.1, w_as=3.0):
  return (ref_losses.ls(logits, label, alpha) + ref_losses.smac(logits, label, alpha)
          + w_as * ref_losses.angular_separation(text))
