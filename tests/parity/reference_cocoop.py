"""The reference CoCoOp forward in PyTorch, for parity tests and benchmarks.

Transcribed from trainers/CoCoOp/cocoop_biomedclip.py of the BiomedCoOp release.

Image features from the frozen tower, normalised; meta_net = Linear(512, 32) -> ReLU ->
Linear(32, 768) giving a bias added to every context vector; for each image in a Python loop
(as the reference), its n_cls prompts padded to 256 tokens through BERT on ``inputs_embeds``,
[CLS] pooled, MLP projection, cosine logits; cross-entropy.
"""

import numpy as np
import torch
import torch.nn.functional as F


class TorchCoCoOp(torch.nn.Module):
  """The reference CoCoOp CustomCLIP (prompt learner with meta-net, class token at the end)."""

  def __init__(self, model, tokenizer, classnames, ctx, net, ctx_init):
    super().__init__()
    self.model = model
    n_ctx = ctx.shape[-2]
    prefix = ctx_init or " ".join(["X"] * n_ctx)
    self.tokenized = tokenizer([f"{prefix} {c}." for c in classnames])  # (n_cls, 256)
    with torch.no_grad():
      emb = model.text.transformer.embeddings.word_embeddings(self.tokenized)
    self.token_prefix, self.token_suffix = emb[:, :1], emb[:, 1 + n_ctx:]
    self.ctx = torch.nn.Parameter(torch.from_numpy(np.array(ctx)))
    k1, k2 = net["linear1"], net["linear2"]
    self.meta_net = torch.nn.Sequential(torch.nn.Linear(*np.shape(k1["kernel"])), torch.nn.ReLU(),
                                        torch.nn.Linear(*np.shape(k2["kernel"])))
    with torch.no_grad():
      for layer, p in ((self.meta_net[0], k1), (self.meta_net[2], k2)):
        layer.weight.copy_(torch.from_numpy(np.array(p["kernel"]).T))
        layer.bias.copy_(torch.from_numpy(np.array(p["bias"])))

  def prompts(self, image_features):
    bias = self.meta_net(image_features).unsqueeze(1)        # (B, 1, ctx_dim)
    ctx_shifted = self.ctx.unsqueeze(0) + bias               # (B, n_ctx, ctx_dim)
    n_cls = self.token_prefix.shape[0]
    return [torch.cat([self.token_prefix, c.unsqueeze(0).expand(n_cls, -1, -1),
                       self.token_suffix], dim=1) for c in ctx_shifted]

  def forward(self, image_nchw, label):
    with torch.no_grad():
      image = self.model.encode_image(image_nchw)
    image = image / image.norm(dim=-1, keepdim=True)
    mask = (self.tokenized != self.model.text.config.pad_token_id).long()
    logits = []
    for pts_i, imf_i in zip(self.prompts(image), image):
      hidden = self.model.text.transformer(inputs_embeds=pts_i, attention_mask=mask)
      text = self.model.text.proj(hidden.last_hidden_state[:, 0])
      text = text / text.norm(dim=-1, keepdim=True)
      logits.append(self.model.logit_scale.exp() * imf_i @ text.t())
    logits = torch.stack(logits)
    return F.cross_entropy(logits, label), logits

  def step(self, image_nchw, label):
    """forward + ``loss.backward()``; returns the forward's outputs."""
    out = self(image_nchw, label)
    out[0].backward()
    return out
