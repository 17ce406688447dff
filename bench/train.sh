#!/bin/sh
# make bench-train: training steps per second of vikt (bench/train.c) next to
# PyTorch (bench/train_torch.py) for every model and thread count, one line
# each on stdout:
#
#   train model=NAME threads=T vikt_per_s=X torch_per_s=Y ratio=R vikt_rss_mb=A torch_rss_mb=B
#
# ratio = X / Y. Without PyTorch (python3-torch) the torch columns and the
# ratio are NA. Parameter counts of both sides go to stderr, once per model.
#
# Each side runs in a fresh process per model and thread count (so the peak
# RSS is that model's), in its best thread setup for T threads:
# vikt_set_num_threads(T); for this Debian PyTorch build OMP_NUM_THREADS=T
# with OPENBLAS_NUM_THREADS=1, set before Python starts (OpenBLAS's own
# threads on top of ATen's make it several times slower), and
# torch.set_num_threads(T). One-thread runs of both sides are pinned to the
# same CPU with taskset.
#
# Environment: MODELS (default "mlp cnn transformer lstm mlp1"), THREADS
# ("1 2"), RUNS (timed runs per measurement, median taken; 7), PYTHON
# (/usr/bin/python3), BENCH_CPU (the CPU for one-thread runs, 0; "none" to
# not pin).
set -u
VIKT=${1:-build/bench/train}
MODELS=${MODELS:-"mlp cnn transformer lstm mlp1"}
THREADS=${THREADS:-"1 2"}
RUNS=${RUNS:-7}
PYTHON=${PYTHON:-/usr/bin/python3}
BENCH_CPU=${BENCH_CPU:-0}
HERE=$(dirname "$0")

have_torch=0
if command -v "$PYTHON" >/dev/null 2>&1 && "$PYTHON" -c 'import torch' >/dev/null 2>&1; then
    have_torch=1
else
    echo "bench-train: PyTorch not found ($PYTHON -c 'import torch' failed): torch columns are NA" >&2
fi

# field NAME LINE: the value of NAME=... in LINE, or NA.
field() {
    v=$(printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p")
    printf '%s' "${v:-NA}"
}

pin() {
    if [ "$1" = 1 ] && [ "$BENCH_CPU" != none ] && command -v taskset >/dev/null 2>&1; then
        printf 'taskset -c %s' "$BENCH_CPU"
    fi
}

status=0
for model in $MODELS; do
    shown=0
    for t in $THREADS; do
        v=$($(pin "$t") "$VIKT" "$model" "$t" "$RUNS" 2>/dev/null) || {
            echo "bench-train: $VIKT $model $t failed" >&2
            status=1
        }
        tl=""
        if [ "$have_torch" = 1 ]; then
            tl=$(env OMP_NUM_THREADS="$t" OPENBLAS_NUM_THREADS=1 $(pin "$t") \
                "$PYTHON" "$HERE/train_torch.py" "$model" "$t" "$RUNS" 2>/dev/null) || {
                echo "bench-train: train_torch.py $model $t failed" >&2
                status=1
            }
        fi
        vr=$(field per_s "$v")
        tr=$(field per_s "$tl")
        ratio=NA
        if [ "$vr" != NA ] && [ "$tr" != NA ]; then
            ratio=$(awk -v a="$vr" -v b="$tr" 'BEGIN { printf "%.2f", a / b }')
        fi
        if [ "$shown" = 0 ]; then
            vp=$(field params "$v")
            tp=$(field params "$tl")
            note=""
            [ "$tp" != NA ] && [ "$vp" != "$tp" ] && note=" (MISMATCH)"
            echo "bench-train: $model: parameters vikt=$vp torch=$tp$note, unit $(field unit "$v")/s" >&2
            shown=1
        fi
        echo "train model=$model threads=$t vikt_per_s=$vr torch_per_s=$tr ratio=$ratio" \
            "vikt_rss_mb=$(field rss_mb "$v") torch_rss_mb=$(field rss_mb "$tl")"
    done
done
exit $status
