# Sourced by scripts/dpt-mpirun: reruns a failed job from its newest checkpoint.
#
#   dpt-mpirun --max-restarts N [--min-np M] -np P PROGRAM ... [--checkpoint-dir D ...]
#
# Each run that fails is logged with its cause (the last error line of its output) and rerun with
# --resume (added when D holds a checkpoint; dptrain takes the newest intact one), at most N times.
# A run that fails before any rank started training (a host gone: mpirun cannot start its ranks)
# is rerun with one rank fewer, down to M (dptrain re-shards at another world size). Not rerun:
# success, a usage error (exit 2: the same command fails the same way), and a job asked to stop
# (a signal to this script, or the ranks' exit 75 after a scheduler's signal). When the restarts
# are used up, the last run's exit code and cause end it.

supervise_log() { echo "dpt-mpirun: $*" >&2; }

# The value after `flag` in the arguments (or in flag=value), empty when absent.
argument_value() {
  local flag=$1; shift
  while [ $# -gt 0 ]; do
    case "$1" in
      "$flag") echo "${2:-}"; return ;;
      "$flag"=*) echo "${1#*=}"; return ;;
    esac
    shift
  done
}

newest_checkpoint() {
  local dir=$1
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  find "$dir" -maxdepth 1 \( -name 'checkpoint-*.pt' -o -name 'checkpoint-*.dpt' \) 2>/dev/null | sort | tail -n 1 || true
}

supervise() {
  local max_restarts="" min_np=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --max-restarts) max_restarts=${2:-}; shift 2 ;;
      --min-np) min_np=${2:-}; shift 2 ;;
      *) break ;;
    esac
  done
  [[ "$max_restarts" =~ ^[0-9]+$ ]] || { supervise_log "error: --max-restarts needs a count, got '$max_restarts'"; return 2; }
  local command=("$@")
  local np_index="" i
  for i in "${!command[@]}"; do
    case "${command[$i]}" in -np|-n|--np|-c) np_index=$((i + 1)); break ;; esac
  done
  local np=${np_index:+${command[$np_index]:-}}
  if [ -n "$min_np" ]; then
    [[ "$min_np" =~ ^[0-9]+$ ]] && [ "$min_np" -ge 1 ] || { supervise_log "error: --min-np needs a count >= 1, got '$min_np'"; return 2; }
    [ -n "$np" ] || { supervise_log "error: --min-np needs -np N in the mpirun arguments"; return 2; }
  fi
  local checkpoint_dir
  checkpoint_dir=$(argument_value --checkpoint-dir "${command[@]}")
  if [ -z "$checkpoint_dir" ]; then
    supervise_log "warning: no --checkpoint-dir in the command: a restart starts the job from the beginning"
  fi
  local has_resume=0
  for i in "${command[@]}"; do [ "$i" = --resume ] && has_resume=1; done

  local logs restarts=0 cause
  logs=$(mktemp -d "${TMPDIR:-/tmp}/dpt-mpirun-XXXXXX")
  trap 'rm -rf "$logs"' RETURN
  while :; do
    local attempt=("${command[@]}")
    [ -n "$np_index" ] && attempt[np_index]=$np
    if [ "$restarts" -gt 0 ] && [ "$has_resume" = 0 ] && [ -n "$(newest_checkpoint "$checkpoint_dir")" ]; then
      attempt+=(--resume)
    fi
    local log="$logs/run-$restarts.log"
    # Output goes to the terminal as usual and to a log that the cause is read from.
    run_mpirun "${attempt[@]}" > >(tee "$log") 2> >(tee -a "$log" >&2)
    local code=$status
    wait  # the tee processes: the log is complete
    if [ "$code" = 0 ]; then
      [ "$restarts" -gt 0 ] && supervise_log "finished after $restarts restart(s)"
      return 0
    fi
    cause=$(grep -aE 'error|exited on signal|noticed that|Killed|timed out|Abort' "$log" | grep -av '^\s*$' | tail -n 1 |
            sed -e 's/^\[[^]]*\] //' -e 's/\s\+/ /g' | cut -c1-300 || true)
    cause=${cause:-no error line in its output}
    if [ "$stop_requested" = 1 ] || [ "$code" = 75 ]; then
      supervise_log "the job stopped on request (exit $code): not restarted; continue it with the same command"
      return "$code"
    fi
    if [ "$code" = 2 ]; then
      supervise_log "usage error (exit 2), not restarted: $cause"
      return 2
    fi
    if [ "$restarts" -ge "$max_restarts" ]; then
      supervise_log "giving up after $restarts restart(s) (--max-restarts $max_restarts); last failure (exit $code): $cause"
      return "$code"
    fi
    restarts=$((restarts + 1))
    local change=""
    if [ -n "$min_np" ] && [ "$np" -gt "$min_np" ] && ! grep -aq 'training: ' "$log"; then
      np=$((np - 1))
      change=" with $np rank(s) (the last run never started training)"
    fi
    local from
    from=$(newest_checkpoint "$checkpoint_dir")
    supervise_log "restart $restarts/$max_restarts after a failure (exit $code): $cause; resuming from ${from:-the beginning}$change"
  done
}
