# bench/watch.sh -- what the scale runners share (sourced; BENCH names the runner, and
# pstrain, tmp, avail_kb and launcher are the runner's): bench_run_watched runs `pstrain
# local $tmp/job.yaml` (log in $tmp/run.log), sampling every 0.2 s each process's peak RSS
# (VmHWM) into hwm[pid] with its role[pid] (coordinator, server[r], worker[r]) and the
# lowest MemAvailable into min_avail; it stops the run when MemAvailable falls under
# 2 GiB, and exits 1 with the log's tail when the run fails. start and end are its wall
# clock.
bench_run_watched() {
  start=$(date +%s.%N)
  OPENBLAS_NUM_THREADS=1 "$pstrain" local "$tmp/job.yaml" > "$tmp/run.log" 2>&1 &
  launcher=$!
  declare -gA hwm role
  min_avail=$avail_kb
  aborted=0
  while kill -0 "$launcher" 2>/dev/null; do
    for pid in $(pgrep -f -- "$tmp/job.yaml" || true); do
      [ "$pid" = "$launcher" ] && continue
      d=/proc/$pid
      cmd=$( { tr '\0' ' ' < "$d/cmdline"; } 2>/dev/null ) || continue
      h=$(awk '/^VmHWM/ { print $2 }' "$d/status" 2>/dev/null) || continue
      [ -n "$h" ] || continue
      if [ -z "${role[$pid]:-}" ]; then
        set -- $cmd
        case "$2" in
          coordinator) role[$pid]=coordinator ;;
          server|worker) role[$pid]="$2[$(echo "$cmd" | sed -n 's/.*--rank \([0-9]*\).*/\1/p')]" ;;
          *) continue ;;
        esac
      fi
      if [ "$h" -gt "${hwm[$pid]:-0}" ]; then hwm[$pid]=$h; fi
    done
    a=$(awk '/MemAvailable/ { print $2 }' /proc/meminfo)
    [ "$a" -lt "$min_avail" ] && min_avail=$a
    if [ "$a" -lt $((2 * 1024 * 1024)) ]; then
      echo "$BENCH: MemAvailable fell to $((a >> 10)) MiB: stopping the run" >&2
      kill -TERM "$launcher" 2>/dev/null || true
      aborted=1
      break
    fi
    sleep 0.2
  done
  set +e
  wait "$launcher"
  code=$?
  set -e
  launcher=
  end=$(date +%s.%N)
  if [ "$code" -ne 0 ] || [ "$aborted" = 1 ]; then
    echo "$BENCH: the run failed (exit $code); its log:" >&2
    tail -30 "$tmp/run.log" >&2
    exit 1
  fi
}
