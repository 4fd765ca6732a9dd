#!/usr/bin/env bash
# Runs one test command in the background of the next ones and collects it later, for
# tests that mostly wait (the SLURM tests wait on the scheduler: a job's time limit alone
# is 60 to 90 s of an idle CPU).
#   bash scripts/alongside.sh start DIR COMMAND...   # starts COMMAND; its output goes to DIR/log
#   bash scripts/alongside.sh wait DIR               # waits for it, prints its output and its
#                                                    # wall time, and exits with its status
set -euo pipefail
action=${1:?start or wait}
dir=${2:?a folder for the log and status}
shift 2
case $action in
  start)
    mkdir -p "$dir"
    rm -f "$dir/status" "$dir/log" "$dir/pid" "$dir/ended"
    date +%s > "$dir/started"
    # its own session (its pid is its process group's), its output to a file: nothing of
    # tox's waits on it
    setsid bash -c 'echo $$ > "$0/pid.new" && mv "$0/pid.new" "$0/pid"
      "$@" > "$0/log" 2>&1; code=$?; date +%s > "$0/ended"; echo $code > "$0/status"' \
      "$dir" "$@" < /dev/null &
    for _ in $(seq 100); do [ -f "$dir/pid" ] && break; sleep 0.1; done
    [ -f "$dir/pid" ] || { echo "alongside: the background command did not start" >&2; exit 1; }
    echo "alongside: started in the background: $*"
    ;;
  wait)
    while [ ! -f "$dir/status" ]; do
      if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null && [ ! -f "$dir/status" ]; then
        cat "$dir/log" 2>/dev/null || true
        echo "alongside: the background command ended without a status (killed?)" >&2
        exit 1
      fi
      sleep 1
    done
    cat "$dir/log"
    started=$(cat "$dir/started")
    echo "alongside: finished after $(( $(cat "$dir/ended") - started )) s," \
      "collected after $(( $(date +%s) - started )) s"
    exit "$(cat "$dir/status")"
    ;;
  *) echo "alongside: start or wait, not $action" >&2; exit 2 ;;
esac
