"""The reference BiomedCoOp training forward in PyTorch, for parity and benchmarks.

Transcribed from trainers/BiomedCoOp/biomedcoop_biomedclip.py of the BiomedCoOp release.

Transcribed as the reference computes it: CoOp prompts ("a photo of a" context, class token at the
end) padded to 256 tokens, LLM prompt features encoded once at 256 tokens, the image tower run
TWICE (student and zero-shot features), per-index prompt scores in a Python loop,
``torch.median`` / ``torch.std`` for the robust z-score, and the loss CE + l1 * mse_loss +
l2 * kl_div(reduction="sum", log_target=True) / numel.
"""

import numpy as np
import torch
import torch.nn.functional as F


class TorchBiomedCoOp(torch.nn.Module):
  """The reference CustomCLIP training forward of BiomedCoOp for an open_clip BiomedCLIP."""

  def __init__(self, model, tokenizer, classnames, prompts, ctx, opts, fixed=None):
    """``fixed``: (n_cls, P, 512) LLM prompt features, else encoded here from ``prompts``."""
    super().__init__()
    self.model, self.opts = model, opts
    n_ctx = ctx.shape[-2]
    self.tokenized = tokenizer([f"a photo of a {c}." for c in classnames])  # (n_cls, 256)
    with torch.no_grad():
      emb = model.text.transformer.embeddings.word_embeddings(self.tokenized)
      # fixed_embeddings: (n_cls, P, 512), encoded once, stored unnormalised.
      self.fixed = fixed if fixed is not None else torch.stack(
          [model.encode_text(tokenizer(list(prompts[c]))) for c in classnames])
    self.token_prefix, self.token_suffix = emb[:, :1], emb[:, 1 + n_ctx:]
    self.ctx = torch.nn.Parameter(torch.from_numpy(np.array(ctx)))

  def forward(self, image_nchw, label):
    n_cls = self.token_prefix.shape[0]
    ctx = self.ctx.unsqueeze(0).expand(n_cls, -1, -1)
    prompts = torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
    mask = (self.tokenized != self.model.text.config.pad_token_id).long()
    hidden = self.model.text.transformer(inputs_embeds=prompts, attention_mask=mask)
    text = F.normalize(self.model.text.proj(hidden.last_hidden_state[:, 0]), dim=-1)
    scale = self.model.logit_scale.exp()
    with torch.no_grad():
      image = F.normalize(self.model.encode_image(image_nchw), dim=-1)
    logits = scale * image @ text.t()
    fixed = self.fixed / self.fixed.norm(dim=-1, keepdim=True)
    with torch.no_grad():
      zs_image = F.normalize(self.model.encode_image(image_nchw), dim=-1)  # second pass
      scores = []
      for i in range(fixed.shape[1]):
        scores.append((scale * zs_image @ fixed[:, i].t()).max(dim=1).values.mean().item())
      scores = torch.tensor(scores)
      med = torch.median(scores)
      mad = torch.median(torch.abs(scores - med))
      z = (scores - med) / mad
      z = (z - z.mean()) / z.std()
      keep = torch.abs(z) <= self.opts["tau"]
      selected = fixed[:, keep].mean(dim=1)
      selected = selected / selected.norm(dim=-1, keepdim=True)
      zs_logits = scale * zs_image @ selected.t()
    mean_llm = fixed.mean(dim=1)
    mean_llm = mean_llm / mean_llm.norm(dim=-1, keepdim=True)
    loss = (F.cross_entropy(logits, label)
            + self.opts["lambda_sccm"] * F.mse_loss(text, mean_llm)
            + self.opts["lambda_kdsp"] * F.kl_div(F.log_softmax(logits, dim=1),
                                                  F.log_softmax(zs_logits, dim=1),
                                                  reduction="sum", log_target=True)
            / logits.numel())
    return loss, keep.numpy(), z.numpy()

  def step(self, image_nchw, label):
    """forward + ``loss.backward()``; returns the forward's outputs."""
    out = self(image_nchw, label)
    out[0].backward()
    return out
