"""Decoded + augmented images per second at batch 32: grain pipeline vs torchvision DataLoader.

Both sides read the same synthetic PNGs (256 images of 512x512 by default), decode with PIL,
apply RandomResizedCrop(224, bicubic) + normalise, and batch 32, with the same number of worker
processes. Run: ``python benchmarks/input_pipeline.py [--workers 2] [--batches 24]``.

``--ahead``: instead, what a short run costs with grain's default read-ahead (16 threads, a buffer
of 500 batches) against ``config.data.read_ahead=-1`` (two batches per core): images decoded by
the time ``--batches`` batches were used, each followed by a pause the length of a step, and the
process's CPU seconds, in one process.
"""

import argparse
import os
import pathlib
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from biomedjax.data import pipeline, readers, sources, splits, synthetic  # noqa: E402


def grain_rate(src, workers, batches, read_ahead=-1):
  it = iter(pipeline.train_dataset(src, global_batch_size=32, seed=0, worker_count=workers,
                                   read_ahead=read_ahead))
  next(it)  # start-up (worker processes) is not throughput
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return 32 * batches / (time.perf_counter() - start)


def torch_rate(paths, workers, batches):
  import torch
  from PIL import Image
  from torchvision import transforms as T

  tf = T.Compose([T.RandomResizedCrop(224, interpolation=T.InterpolationMode.BICUBIC),
                  T.ToTensor(), T.Normalize((0.48145466, 0.4578275, 0.40821073),
                                            (0.26862954, 0.26130258, 0.27577711))])

  class Files(torch.utils.data.Dataset):
    def __len__(self):
      return len(paths)

    def __getitem__(self, i):
      return tf(Image.open(paths[i]).convert("RGB")), 0

  loader = torch.utils.data.DataLoader(Files(), batch_size=32, shuffle=True, drop_last=True,
                                       num_workers=workers, persistent_workers=workers > 0)
  done, start, it = 0, None, None
  while done < batches + 1:
    for _ in loader:
      done += 1
      if done == 1:
        start = time.perf_counter()
      if done == batches + 1:
        break
  return 32 * batches / (time.perf_counter() - start)


class Counted:
  """A source that counts the records read, by any thread."""

  def __init__(self, src):
    self.src, self.reads = src, 0

  def __len__(self):
    return len(self.src)

  def __getitem__(self, i):
    self.reads += 1
    return self.src[i]


def read_ahead_cost(src, batches, step_s=0.5):
  """-> {setting: (images decoded, CPU s)} after ``batches`` batches, one step's pause each."""
  import grain
  out = {}
  for name, options in (("grain default", grain.ReadOptions()),
                        ("read_ahead=-1", pipeline.read_options(-1))):
    counted = Counted(src)
    saved, pipeline.read_options = pipeline.read_options, lambda _=None, o=options: o
    try:
      cpu = time.process_time()
      it = iter(pipeline.train_dataset(counted, global_batch_size=32, seed=0))
      for _ in range(batches):
        next(it)
        time.sleep(step_s)  # the step, during which the threads read ahead
      out[name] = (counted.reads, time.process_time() - cpu)
      getattr(it, "close", lambda: None)()
    finally:
      pipeline.read_options = saved
  return out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--batches", type=int, default=24)
  parser.add_argument("--images", type=int, default=256)
  parser.add_argument("--size", type=int, default=512)
  parser.add_argument("--ahead", action="store_true", help="read-ahead cost (docstring)")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    split_file = synthetic.generate(tmp, 4, args.images // 4, args.size)
    items = [it for v in splits.read_split_file(split_file).values() for it in v]
    examples = readers.from_items(items, tmp)
    if args.ahead:
      print(f"{args.batches} batches of 32 used, {os.cpu_count()} cores")
      for name, (reads, cpu) in read_ahead_cost(
          sources.ImageFileSource(examples), args.batches).items():
        print(f"{name}: {reads} images decoded ({reads / (32 * args.batches):.1f}x those used), "
              f"{cpu:.1f} CPU s")
      return
    g = grain_rate(sources.ImageFileSource(examples), args.workers, args.batches)
    t = torch_rate([e.path for e in examples], args.workers, args.batches)
  print(f"workers={args.workers} batch=32 images={args.images}x{args.size}px")
  print(f"grain: {g:.1f} img/s  torchvision DataLoader: {t:.1f} img/s  ratio: {g / t:.2f}")


if __name__ == "__main__":
  main()
