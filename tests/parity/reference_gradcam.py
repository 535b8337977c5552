"""A PyTorch transcription of pytorch-grad-cam's GradCAM as the IU-Xray notebook uses it.

Transcribed from jacobgil/pytorch-grad-cam (``pytorch_grad_cam/base_cam.py``,
``grad_cam.py``, ``activations_and_gradients.py``, ``utils/image.py: scale_cam_image``) and
``evaluatingBiomedClIP_IUXRAY.ipynb`` (Nafiz95/BioVLM_Eval_CXR: ``GradCAMCustom``, ``vit_reshape``,
``SimilarityTarget``, ``ClassifierOutputTarget``), for the parity test only (the library is not
installed here). One substitution: ``cv2.resize(img, (W, H))`` (INTER_LINEAR) is done with
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``, which computes the same
thing when enlarging (source = (dst + 0.5) * scale - 0.5, clamped to the edge pixels).
"""

from __future__ import annotations

import numpy as np
import torch


def vit_reshape(x, h=14, w=14):
  b, _, c = x.shape
  return x[:, 1:, :].permute(0, 2, 1).reshape(b, c, h, w)


class SimilarityTarget:
  def __init__(self, cls_idx, txt_mat):
    self.cls, self.txt = cls_idx, txt_mat

  def __call__(self, img_emb):
    if img_emb.dim() == 1:
      return torch.dot(img_emb, self.txt[self.cls])
    return (img_emb @ self.txt.T)[0, self.cls]


class ClassifierOutputTarget:
  def __init__(self, category):
    self.category = category

  def __call__(self, model_output):
    if len(model_output.shape) == 1:
      return model_output[self.category]
    return model_output[:, self.category]


class ActivationsAndGradients:
  def __init__(self, model, target_layers, reshape_transform):
    self.model, self.reshape_transform = model, reshape_transform
    self.gradients, self.activations, self.handles = [], [], []
    for layer in target_layers:
      self.handles.append(layer.register_forward_hook(self.save_activation))
      self.handles.append(layer.register_forward_hook(self.save_gradient))

  def save_activation(self, module, input, output):
    activation = output
    if self.reshape_transform is not None:
      activation = self.reshape_transform(activation)
    self.activations.append(activation.cpu().detach())

  def save_gradient(self, module, input, output):
    if not hasattr(output, "requires_grad") or not output.requires_grad:
      return

    def _store_grad(grad):
      if self.reshape_transform is not None:
        grad = self.reshape_transform(grad)
      self.gradients = [grad.cpu().detach()] + self.gradients

    output.register_hook(_store_grad)

  def __call__(self, x):
    self.gradients, self.activations = [], []
    return self.model(x)

  def release(self):
    for h in self.handles:
      h.remove()


def _resize(img, size_wh):
  t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
  out = torch.nn.functional.interpolate(t, size=(size_wh[1], size_wh[0]), mode="bilinear",
                                        align_corners=False)
  return out[0, 0].numpy()


def scale_cam_image(cam, target_size=None):
  result = []
  for img in cam:
    img = img - np.min(img)
    img = img / (1e-7 + np.max(img))
    if target_size is not None:
      img = _resize(img, target_size)
    result.append(img)
  return np.float32(result)


class GradCAM:
  """BaseCAM + GradCAM (uses_gradients, no eigen-smoothing, no augmentation smoothing)."""

  def __init__(self, model, target_layers, reshape_transform=None):
    self.model = model.eval()
    self.target_layers = target_layers
    self.activations_and_grads = ActivationsAndGradients(model, target_layers, reshape_transform)

  def get_cam_weights(self, grads):
    return np.mean(grads, axis=(2, 3))

  def get_cam_image(self, activations, grads):
    weights = self.get_cam_weights(grads)
    return (weights[:, :, None, None] * activations).sum(axis=1)

  def forward(self, input_tensor, targets):
    outputs = self.activations_and_grads(input_tensor)
    self.model.zero_grad()
    loss = sum([target(output) for target, output in zip(targets, outputs)])
    loss.backward(retain_graph=True)
    activations = [a.cpu().data.numpy() for a in self.activations_and_grads.activations]
    grads = [g.cpu().data.numpy() for g in self.activations_and_grads.gradients]
    target_size = (input_tensor.size(-1), input_tensor.size(-2))
    per_layer = []
    for i in range(len(self.target_layers)):
      cam = np.maximum(self.get_cam_image(activations[i], grads[i]), 0)
      per_layer.append(scale_cam_image(cam, target_size)[:, None, :])
    per_layer = np.maximum(np.concatenate(per_layer, axis=1), 0)
    return scale_cam_image(np.mean(per_layer, axis=1))

  def __call__(self, input_tensor, targets):
    return self.forward(input_tensor, targets)


class GradCAMCustom(GradCAM):
  """The notebook's subclass: one extra forward/backward before the library's own."""

  def forward(self, x, targets):
    out = self.model(x)
    loss = sum(t(out) for t in targets)
    loss.backward(retain_graph=True)
    return super().forward(x, targets)


class Classifier(torch.nn.Module):
  """The notebook's BioMedCLIPClassifier: visual tower -> Linear(embed_dim, n_classes)."""

  def __init__(self, visual, head):
    super().__init__()
    self.visual, self.head = visual, head

  def forward(self, x):
    return self.head(self.visual(x))
