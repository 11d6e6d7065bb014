#!/usr/bin/env bash
# One GPU stage of mednet-pvs-synth-any, for the lent GPU machine (run tool; carry .devcarry, made
# by benchmarks/gpu_kit.sh). Starts from the bundled model's weights, or resumes a carried
# checkpoint; writes what comes back under $OUT (<= 8 files): last.ckpt (saved when max_time stops
# the run, too), metrics.csv (perf/*: data wait against GPU step), train.log, gpu_util.csv,
# command.txt, and model.safetensors + config.json of the exported bundle. One long epoch
# (limit_train_batches 100000): a new epoch restarts the workers and refills the queue.
#
#     run: bash benchmarks/gpu_train_synth_any.sh            carry: [".devcarry"]
#     env: RESUME=.devcarry/last.ckpt (resume: same run, optimiser state too; else INIT below)
#          INIT=mednet_pvs/zoo/bundled/mednet-pvs-synth-any  MAXTIME=00:00:08:00  HARDLIMIT=540 (s)
#          STEPS=100000  DSEED=300000 (phantom seeds, new per stage)  SPV=48  WORKERS=14  BATCH=8  PATCH=96
#          NOISE=0.1 PPROC=0.5 PTHICK=0.35 (the data of CPU stage 5: noise above the held-out set's 0.08,
#          procedural anatomy in half of the samples, thick slices in 35 %)
#          WIDTH=32 KERNEL=5 (a wider MedNeXt, base channels / depthwise kernel, warm-started from INIT:
#          mednet_pvs.nets.widen keeps the 16-channel model's function and adds channels, UpKern resizes
#          the kernels; with RESUME the checkpoint's own widths are needed)
#          SREC=1 (Skeleton Recall loss of that weight, its skeletons made in the 14 loader workers:
#          --data.skeleton_classes [2]; in the trainer they would cost 2.6 GPU steps, benchmarks/bench_skeleton.py)
#          EMA=0.999 (--model.ema_decay: export a moving average of the weights; on the CPU from the soup it tied
#          the raw weights at 0.999, session 25, and scored 0.010 below them at 0.9995, session 26; untried on a GPU)
#          DRY=1 (print the command, run nothing)  ACCEL=gpu (cpu: the local check of tests/test_gpu_kit.py)
# Afterwards, here: python benchmarks/fit_threshold_synth_any.py --model <folder with model.safetensors + config.json>,
# then python zoo/build_bundled.py <folder> mednet-pvs-synth-any --patch <tile> --pad replicate --threshold <fitted> --write
# (stage 5, trained on 48^3 patches, ships 64^3 tiles: they scored above 96^3; re-check the tile after 96^3 training)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/synth_any_out}; mkdir -p "$OUT"
RUN=${RUN:-/tmp/synth_any_run}
if [ -d .devcarry/whl ] && ! python3 -c "import torchio, nilearn, jsonargparse" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .devcarry/whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  python3 -c "import SimpleITK" 2>/dev/null || export PYTHONPATH="$PWD/.devcarry/shim:$PYTHONPATH"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
ACCEL=${ACCEL:-gpu}
START=(--model.init_from "${INIT:-mednet_pvs/zoo/bundled/mednet-pvs-synth-any}")
[ -n "${RESUME:-}" ] && START=(--ckpt_path "$RESUME")
NET=()
[ -n "${WIDTH:-}" ] && NET+=(--model.network_kwargs.n_channels "$WIDTH")
[ -n "${KERNEL:-}" ] && NET+=(--model.network_kwargs.kernel_size "$KERNEL")
[ -n "${SREC:-}" ] && NET+=(--model.skeleton_recall_weight "$SREC" --data.skeleton_classes "[2]")
[ -n "${EMA:-}" ] && NET+=(--model.ema_decay "$EMA")
CMD=(python3 -m mednet_pvs.cli.main fit --config synth_any --logger csv --trainer.default_root_dir "$RUN"
  --trainer.accelerator "$ACCEL" --trainer.benchmark true --trainer.max_epochs -1 --trainer.max_steps "${STEPS:-100000}"
  --trainer.limit_train_batches 100000 --trainer.max_time "${MAXTIME:-00:00:08:00}" --trainer.limit_val_batches 0
  --trainer.log_every_n_steps "${LOG_EVERY:-20}" --trainer.callbacks+=mednet_pvs.training.throughput.StepTimes --checkpoint_every_n_steps "${CKPT_EVERY:-150}"
  "${START[@]}" ${NET[@]+"${NET[@]}"} --model.warmup_steps 100 --data.seed "${DSEED:-300000}"
  --data.patch_size "${PATCH:-96}" --data.batch_size "${BATCH:-8}" --data.samples_per_volume "${SPV:-48}"
  --data.queue_length $((4 * ${SPV:-48})) --data.num_workers "${WORKERS:-14}" --data.synthetic_train_size 100000
  --data.source.noise "${NOISE:-0.1}" --data.source.p_procedural "${PPROC:-0.5}" --data.source.p_thick "${PTHICK:-0.35}")
echo "${CMD[*]}" | tee "$OUT/command.txt"
[ -n "${DRY:-}" ] && exit 0
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$OUT/gpu_util.csv" 2>/dev/null &
fi
timeout "${HARDLIMIT:-540}" "${CMD[@]}" > "$OUT/train.log" 2>&1
rc=$?
echo "fit exit status $rc" >> "$OUT/train.log"
cp "$RUN"/checkpoints/last.ckpt "$OUT/" 2>/dev/null
cp "$(ls -t $(find "$RUN" -name metrics.csv) 2>/dev/null | head -1)" "$OUT/metrics.csv" 2>/dev/null
cp "$RUN"/model/model.safetensors "$RUN"/model/config.json "$OUT/" 2>/dev/null
tail -5 "$OUT/train.log"; ls -la "$OUT"
exit $rc
