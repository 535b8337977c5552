"""What one decision for all processes costs per step (``biomedjax.train.agreement``).

Starts two JAX processes on this machine (as README "Several machines" does) and times
``Agreement.decide`` with the training loop's flags, the median over ``--steps`` boundaries,
next to the demo's train step measured in the same processes' setting:

  PYTHONPATH=. python benchmarks/agreement.py --steps 300
"""

import argparse
import os
import socket
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import statistics, sys, time
    import jax
    from biomedjax.train import agreement, distributed
    distributed.initialize(distributed.resolve())
    agree = agreement.Agreement("bench")
    times = []
    for step in range(int(sys.argv[1])):
      t = time.perf_counter()
      agree.decide(step, any_of={"stop": False}, from_zero={"early": False, "save": step % 50 == 0})
      times.append(time.perf_counter() - t)
    if jax.process_index() == 0:
      times = sorted(times[10:])
      print(f"decide(): median {statistics.median(times) * 1e3:.2f} ms, "
            f"90th percentile {times[int(0.9 * len(times))] * 1e3:.2f} ms over {len(times)} steps")
""")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=300)
  args = parser.parse_args()
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = [subprocess.Popen(
      [sys.executable, "-c", CHILD, str(args.steps)],
      env={**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
           "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)}) for i in range(2)]
  sys.exit(max(p.wait() for p in procs))


if __name__ == "__main__":
  main()
