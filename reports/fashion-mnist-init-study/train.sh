#!/usr/bin/env bash
# Generator-initialisation study on real Fashion-MNIST (issue 9): baseline and WINN with the official
# and the legacy generator initialisation, seeds 0-2, trained 5 epochs, then resumed to 15 (exact resume:
# the 5-epoch run is the first 5 epochs of the 15-epoch run). Two jobs at a time, one torch thread each.
set -euo pipefail
WR="env PYTHONPATH=/work/exp /work/main/.venv/bin/python -m winn_robust.cli"  # the frozen checkout of commit.txt
ROOT=/work/runs/init-study
COMMON=(--data fashion-mnist --data-dir /usr/share/datasets/fashion-mnist --arch vanilla --train-limit 7200
        --val-size 5000 --synthesis-max-steps 100 --no-progress --device cpu)
job() {  # name method init seed
    local name=$1 method=$2 init=$3 seed=$4 dir=$ROOT/$1
    if [ ! -f "$dir/e5/best.pt" ] || [ "$(python3 -c "import csv;print(sum(1 for _ in csv.DictReader(open('$dir/e5/metrics.csv'))))" 2>/dev/null)" != 5 ]; then
        OMP_NUM_THREADS=1 $WR train --method "$method" --generator-init "$init" --seed "$seed" --epochs 5 "${COMMON[@]}" --out "$dir/e5" > "$dir.e5.log" 2>&1
    fi
    rm -rf "$dir/e15"; cp -r "$dir/e5" "$dir/e15"
    OMP_NUM_THREADS=1 $WR train --resume --epochs 15 --data-dir /usr/share/datasets/fashion-mnist --no-progress --device cpu --out "$dir/e15" > "$dir.e15.log" 2>&1
    echo "$(date +%T) done $name"
}
mkdir -p "$ROOT"
export -f job; export WR ROOT; export COMMON_STR="${COMMON[*]}"
jobs_list=()
for seed in 0 1 2; do
    jobs_list+=("official-s$seed winn official $seed" "legacy-s$seed winn legacy $seed")
done
for seed in 0 1 2; do jobs_list+=("baseline-s$seed baseline official $seed"); done
run_queue() {
    local pids=()
    for spec in "$@"; do
        # shellcheck disable=SC2086
        job $spec &
        pids+=($!)
        while [ "$(jobs -rp | wc -l)" -ge 2 ]; do sleep 5; done
    done
    wait
}
run_queue "${jobs_list[@]}"
echo "$(date +%T) all done"
