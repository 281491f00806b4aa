#!/usr/bin/env bash
# Evaluate the init study: per seed and budget, baseline vs WINN (official init) vs WINN (legacy init) on
# Fashion-MNIST test images: FGSM at 1/32 and 1/8 on the first 2,000, APGD-CE at 1/32 on the first 500.
set -euo pipefail
ROOT=/work/runs/init-study
cat /work/exp2/.git 2>/dev/null; (cd /work/exp2 && git rev-parse HEAD) > $ROOT/eval/commit.txt
for budget in e5 e15; do for seed in 0 1 2; do
  out=$ROOT/eval/$budget-s$seed
  [ -f "$out/results.json" ] && continue
  OMP_NUM_THREADS=1 PYTHONPATH=/work/exp2 /work/main/.venv/bin/python -m winn_robust attack \
    --baseline baseline=$ROOT/baseline-s$seed/$budget --model winn-official=$ROOT/official-s$seed/$budget \
    --model winn-legacy=$ROOT/legacy-s$seed/$budget --data-dir /usr/share/datasets/fashion-mnist \
    --eps 1/32,0.125 --attack fgsm,apgd-ce --attack-limit apgd-ce=500 --attack-eps apgd-ce=1/32 \
    --limit 2000 --threads 1 --no-progress --device cpu --out $out > $out.log 2>&1 || echo "FAILED $out"
  echo "$(date +%T) done $budget-s$seed"
done; done
echo "$(date +%T) all done"
