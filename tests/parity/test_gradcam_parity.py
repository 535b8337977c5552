

@pytest.mark.slow
def test_full_size_default_block_matches_pytorch_grad_cam(full_checkpoint, full_model):
  """The study's setting at full size: block -3's attention projection, zero-shot target."""
  src, torch_model, _ = full_checkpoint
  pixels = np.random.default_rng(2).normal(size=(1, 224, 224, 3)).astype(np.float32)
  from tests.parity import openclip_fixture as fx
  tokenizer = fx.openclip_tokenizer(src, 256)
  with torch.no_grad():
    txt = torch_model.encode_text(tokenizer(["Cardiomegaly", "Pleural Effusion"])).float()
  expected = _reference_maps(torch_model.visual, pixels, lambda c: ref.SimilarityTarget(c, txt),
                             [1], list(gradcam.DEFAULT_BLOCKS))
  got = gradcam.gradcam(full_model.module, full_model.params, pixels,
                        gradcam.zero_shot_target(txt.numpy(), 1))
  assert np.ptp(expected) > 0.9
  np.testing.assert_allclose(got, expected, atol=1e-4)
