#!/usr/bin/env bash
# gpu-kit/run.sh: run the `gpu` scale of ratio_losses on a bare GPU host (Python with torch and torchvision, nothing
# else, no network), from the root of a copy of the checkout that `make gpu-kit` was run in.
#
#   gpu-kit/run.sh OUT [--presets "crl_table4 crl_table3 ..."] [--only REGEX] [--minutes N] [--full-benchmark]
#   gpu-kit/run.sh OUT --check      # on any machine, CPU: the same steps, two optimiser steps per configuration
#
# 1. installs the kit's wheels offline into a fresh virtual environment OUT/venv that also sees the host's packages
#    (torch, torchvision, numpy: the host's own builds), and this checkout's ratio_losses;
# 2. registers its Jupyter kernel (inside OUT/venv);
# 3. runs benchmarks/gpu.py --scale-only (the gpu scale's images/s and seconds per run; --full-benchmark: all of it)
#    into OUT/benchmark.txt;
# 4. runs the presets' gpu-scale points through `ratio-losses sweep` and the experiment notebook, as every scale runs:
#    records, executed notebooks and checkpoints in OUT/runs/gpu/PRESET/POINT/ (--check: OUT/smoke/gpu/, on fixture data).
#    --minutes N stops the sweep after N minutes as Ctrl-C does: finished points keep their records, the running one
#    its last checkpoint, and the same command resumes.
# Everything it prints is also in OUT/run.log. Where the host lacks something, it stops with one line saying what.
set -uo pipefail

KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "${RATIO_LOSSES_CHECKOUT:-$KIT/..}" && pwd)   # the checkout: the kit's parent folder unless set
die() { echo "gpu-kit: $*" >&2; exit 1; }

OUT= ; CHECK=0 ; FULL=0 ; ONLY= ; MINUTES= ; PRESETS="crl_table4 crl_table3 cc_table4 cc_table1 msl_table2 fg_table4"
while [ $# -gt 0 ]; do
  case "$1" in
    --check) CHECK=1 ;;
    --full-benchmark) FULL=1 ;;
    --presets) [ $# -ge 2 ] || die "--presets needs a value, e.g. --presets \"crl_table4 cc_table4\""; PRESETS=$2; shift ;;
    --only) [ $# -ge 2 ] || die "--only needs a regular expression over the points' labels"; ONLY=$2; shift ;;
    --minutes) [[ ${2:-} =~ ^[0-9]*\.?[0-9]+$ ]] && [[ ${2:-} =~ [1-9] ]] || die "--minutes needs a positive number, e.g. --minutes 10"; MINUTES=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see gpu-kit/run.sh --help)" ;;
    *) [ -z "$OUT" ] || die "one output folder only (got $OUT and $1)"; OUT=$1 ;;
  esac
  shift
done
[ -n "$OUT" ] || die "give the folder to write into: gpu-kit/run.sh OUT (see --help)"
mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/run.log") 2> >(tee -a "$OUT/run.log" >&2)

[ -f "$REPO/nbs/experiments/train.ipynb" ] && [ -d "$REPO/ratio_losses" ] \
  || die "$REPO is not a ratio_losses checkout: run the kit from gpu-kit/ inside the checkout it was built in"
for p in $PRESETS; do [ -f "$REPO/configs/$p.yaml" ] || die "--presets: configs/$p.yaml does not exist"; done

PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || die "no $PY on PATH; set PYTHON=/path/to/the/python/that/has/torch"
VER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || die "$PY does not run"
[ -f "$KIT/wheels/constraints-$VER.txt" ] \
  || die "the host's Python is $VER; this kit carries wheels for $(ls "$KIT"/wheels/constraints-*.txt | sed 's/.*constraints-//; s/\.txt//' | tr '\n' ' ')(rebuild it with make gpu-kit GPU_KIT_PYTHONS=$VER)"
MISSING=$("$PY" -c '
import importlib.util
print(" ".join(m for m in ("torch", "torchvision", "numpy") if importlib.util.find_spec(m) is None))')
[ -z "$MISSING" ] || die "$PY has no $MISSING: the kit uses the host's own builds of torch, torchvision and numpy"
if [ $CHECK = 0 ]; then
  "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || die "torch sees no CUDA device (torch.cuda.is_available() is False); on a machine without one, run with --check"
fi
echo "gpu-kit: $(date -u +%FT%TZ), host Python $VER, $("$PY" -c 'import torch; print("torch", torch.__version__, "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU")'), kit of $(cat "$KIT/COMMIT")"

# 1. the environment: the kit's wheels over the host's packages
VENV=$OUT/venv
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv --without-pip "$VENV" || die "$PY -m venv failed (Debian/Ubuntu: apt-get install python3-venv)"
fi
VPY=$VENV/bin/python
PURE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$REPO" > "$PURE/00-ratio-losses-checkout.pth"          # this checkout's package, first
"$PY" -c '
import os, sys, sysconfig
std = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
for p in sys.path:   # the host site folders (and what their .pth files add), not its standard library
    if p and os.path.isdir(p) and ("-packages" in p or not any(p.startswith(s) for s in std)):
        print(p)' > "$PURE/zz-host-packages.pth"
PIP=$(ls "$KIT"/wheels/pip-*.whl 2>/dev/null | head -1)
[ -n "$PIP" ] || die "the kit has no pip wheel: rebuild it with make gpu-kit"
"$VPY" "$PIP/pip" install -q --disable-pip-version-check --no-index --no-cache-dir --find-links "$KIT/wheels" \
  -c "$KIT/wheels/constraints-$VER.txt" -r "$KIT/wheels/requirements.txt" \
  || die "installing the kit's wheels into $VENV failed (see above); the kit may be incomplete: rebuild it with make gpu-kit"
"$VPY" -c 'import papermill, ipykernel, ratio_losses.sweeps' 2>"$OUT/import-error.txt" \
  || die "the environment does not import the sweep's packages: $(tail -1 "$OUT/import-error.txt")"
echo "gpu-kit: environment $VENV ready ($("$VPY" -c 'import papermill, ipykernel; print("papermill", papermill.__version__, "ipykernel", ipykernel.__version__)'))"

# 2. the kernel, inside the environment (and searched first)
"$VPY" -m ipykernel install --sys-prefix --name ratio_losses --display-name "ratio_losses (gpu kit)" >/dev/null \
  || die "registering the Jupyter kernel failed"
export JUPYTER_PATH=$VENV/share/jupyter
export RATIO_LOSSES_DATA=$KIT/data PYTHONUNBUFFERED=1

# the commit the records name: the kit's, where this tree's tracked files are the ones it was built from
COMMIT=$(cat "$KIT/COMMIT")
(cd "$REPO" && sha256sum --check --status "$KIT/TREE.sha256") || { COMMIT="${COMMIT%+dirty}+dirty"; echo "gpu-kit: the tree differs from the kit's commit; records say $COMMIT"; }
export RATIO_LOSSES_GIT_COMMIT=$COMMIT
cd "$REPO"

"$VPY" -c "
from ratio_losses.data.datasets import load_tensors
tr, te = (load_tensors('fashion_mnist', s, pad_to=32) for s in ('train', 'test'))
assert tuple(tr.images.shape) == (60000, 1, 32, 32) and tuple(te.images.shape) == (10000, 1, 32, 32), 'incomplete'
print('gpu-kit: Fashion-MNIST read from the kit, padded to 32 x 32:', len(tr.labels), 'training and', len(te.labels), 'test images')" \
  2>"$OUT/data-error.txt" || die "the kit's Fashion-MNIST does not load: $(tail -1 "$OUT/data-error.txt")"

# 3. the benchmark
BENCH=(--scale-only); [ $FULL = 1 ] && BENCH=()
[ $CHECK = 1 ] && BENCH=(--quick --scale-only)
"$VPY" benchmarks/gpu.py "${BENCH[@]}" | tee "$OUT/benchmark.txt"
[ "${PIPESTATUS[0]}" = 0 ] || die "benchmarks/gpu.py failed (see above)"

# 4. the points
CONFIGS=(); for p in $PRESETS; do CONFIGS+=("configs/$p.yaml"); done
ARGS=(sweep "${CONFIGS[@]}" --scale gpu --workers 1 --no-progress --time-min 1440)   # one worker, up to a day
[ -n "$ONLY" ] && ARGS+=(--only "$ONLY")
if [ $CHECK = 1 ]; then ARGS+=(--smoke --runs-root "$OUT"); else ARGS+=(--runs-root "$OUT/runs"); fi   # OUT/smoke/gpu, OUT/runs/gpu
LIMIT=(); [ -n "$MINUTES" ] && LIMIT=(timeout --signal=INT --kill-after=120 "${MINUTES}m")
# Python's own Ctrl-C handler, installed even where this script was started with SIGINT ignored (nohup, a background
# job of a non-interactive shell): --minutes stops the sweep with SIGINT, as Ctrl-C does
"${LIMIT[@]}" "$VPY" -c 'import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler)
from ratio_losses.cli import main; sys.exit(main(sys.argv[1:]))' "${ARGS[@]}"
rc=$?
if [ -n "$MINUTES" ] && [ $rc = 130 ] || [ $rc = 124 ]; then
  echo "gpu-kit: stopped after $MINUTES min as asked; the same command resumes"; exit 0
fi
[ $rc = 0 ] || die "the sweep failed (exit $rc); see above and $OUT/run.log"
echo "gpu-kit: done. Records: $OUT/$([ $CHECK = 1 ] && echo smoke || echo runs)/gpu/; log: $OUT/run.log"
