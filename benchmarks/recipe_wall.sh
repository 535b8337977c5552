#!/usr/bin/env bash
# Wall time of one paper recipe, end to end (benchmarks/README.md, "Paper recipes"):
# configs/paper/biomedcoop_fewshot.py restricted to CoOp + Tip-Adapter on the real BTMRI and
# BUSI samples of ../shared/data/images (laid out under a temporary root by symlinks), K = 1,
# seeds 1 and 2, runlocal (2 epochs), the tiny random-weight preset: 8 runs. Each sweep runs in
# a fresh workdir; --sweep=run (one process per run) vs --sweep=packed, each with the
# compilation cache off, on and empty (cold), and on and filled by the cold sweep (warm).
#
#   bash benchmarks/recipe_wall.sh [python]
#   COMBOS="packed:off run:cold" bash benchmarks/recipe_wall.sh   # some of the six sweeps
# Every sweep runs under `nice -n 10` (NICE=0 to change); the last column is the 1-minute load
# average sampled every 30 s during the sweep (min-max): the machine's other work, which the wall
# times depend on.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python}
SHARED=../shared/data/images
TMP=$(mktemp -d)
for n in BTMRI BUSI; do
  mkdir -p "$TMP/root/$n"
  ln -s "$(realpath $SHARED/$n/images)" "$TMP/root/$n/$n"
  ln -s "$(realpath $SHARED/$n/split_$n.json)" "$TMP/root/$n/split_$n.json"
done
ARG="methods=coop+tip_adapter,datasets=btmri+busi,shots=1,seeds=1+2,runlocal=True,root=$TMP/root"
unset JAX_COMPILATION_CACHE_DIR
echo "| sweep | compilation cache | runs | wall s | load average (1 min) |"
echo "|---|---|--:|--:|---|"
# mode:state pairs, in order; a warm state reuses the cache its mode's cold sweep filled
for combo in ${COMBOS:-run:off run:cold run:warm packed:off packed:cold packed:warm}; do
  mode=${combo%%:*}; state=${combo##*:}
  if [[ $state == off ]]; then export BIOMEDJAX_COMPILATION_CACHE=off
  else export BIOMEDJAX_COMPILATION_CACHE="$TMP/cache_$mode"; fi
  work="$TMP/work_${mode}_$state"
  (while sleep 30; do cut -d' ' -f1 /proc/loadavg; done) > "$TMP/load_${mode}_$state" &
  sampler=$!
  start=$(date +%s.%N)
  nice -n "${NICE:-10}" "$PY" launch.py --config "configs/paper/biomedcoop_fewshot.py:$ARG" \
    --config.model.preset=tiny --workdir "$work" --sweep=$mode > "$TMP/log_${mode}_$state" 2>&1
  end=$(date +%s.%N)
  kill "$sampler"
  load=$(sort -n "$TMP/load_${mode}_$state" | sed -n '1p;$p' | paste -sd- -)
  runs=$(find "$work" -name results.json | wc -l)
  printf "| %s | %s | %d | %.1f | %s |\n" "$mode" "$state" "$runs" "$(echo "$end - $start" | bc)" \
    "${load:-n/a}"
done
echo "logs: $TMP"
