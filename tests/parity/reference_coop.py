"""PyTorch transcription of the reference CoOp forward for an open_clip BiomedCLIP.

Written from the reference CoOp trainer (trainers/CoOp/coop_biomedclip.py) and its
``PromptLearner`` layout (token prefix, context, suffix; class token end / middle / front), for the
parity test and the train-step benchmark: prompts tokenized by open_clip's tokenizer at 256 tokens,
BERT on ``inputs_embeds`` with the
tokenized attention mask, [CLS] pooled, MLP projection, ``exp(logit_scale) * cos``.
"""

import numpy as np
import torch
import torch.nn.functional as F


class TorchCoOp(torch.nn.Module):
  """The reference CoOp model for an open_clip BiomedCLIP (trainers/CoOp/coop_biomedclip.py)."""

  def __init__(self, model, tokenizer, classnames, ctx, position="end", ctx_init=""):
    super().__init__()
    self.model, self.position = model, position
    for p in model.parameters():  # the reference freezes everything but the prompt learner
      p.requires_grad_(False)
    n_ctx = ctx.shape[-2]
    names = [c.replace("_", " ") for c in classnames]
    self.name_lens = [len(tokenizer.tokenizer.encode(n, add_special_tokens=False)) for n in names]
    prefix = ctx_init or " ".join(["X"] * n_ctx)
    self.tokenized = tokenizer([f"{prefix} {n}." for n in names])  # (n_cls, 256)
    with torch.no_grad():
      emb = model.text.transformer.embeddings.word_embeddings(self.tokenized)
    self.register_buffer("token_prefix", emb[:, :1])
    self.register_buffer("token_suffix", emb[:, 1 + n_ctx:])
    self.ctx = torch.nn.Parameter(torch.from_numpy(np.array(ctx)))

  def prompts(self):
    ctx = self.ctx
    n_cls = self.token_prefix.shape[0]
    if ctx.dim() == 2:
      ctx = ctx.unsqueeze(0).expand(n_cls, -1, -1)
    if self.position == "end":
      return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
    half = ctx.shape[1] // 2
    out = []
    for i, nl in enumerate(self.name_lens):
      p, c, s = self.token_prefix[i:i + 1], ctx[i:i + 1], self.token_suffix[i:i + 1]
      if self.position == "middle":
        out.append(torch.cat([p, c[:, :half], s[:, :nl], c[:, half:], s[:, nl:]], dim=1))
      else:
        out.append(torch.cat([p, s[:, :nl], c, s[:, nl:]], dim=1))
    return torch.cat(out, dim=0)

  def forward(self, image_nchw):
    with torch.no_grad():
      img = self.model.encode_image(image_nchw)
    mask = (self.tokenized != self.model.text.config.pad_token_id).long()
    hidden = self.model.text.transformer(inputs_embeds=self.prompts(),
                                         attention_mask=mask).last_hidden_state
    txt = self.model.text.proj(hidden[:, 0])
    return self.model.logit_scale.exp() * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
