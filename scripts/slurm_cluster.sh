#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the tests and local trials.
#   bash scripts/slurm_cluster.sh start|stop|status
# start: installs Debian's slurmctld/slurmd/munge if missing (needs root and apt),
# writes /etc/slurm/slurm.conf, starts munged, slurmctld and slurmd, and waits until
# `srun hostname` answers (SLURM_CLUSTER_WAIT_S, default 60). Idempotent: starting a
# running cluster checks it (and reconfigures it if the config written here changed).
# stop: ends the daemons this script started (by their pid files).
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE_DIR=/var/lib/slurm
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
HOST=$(hostname -s)
WAIT_S=${SLURM_CLUSTER_WAIT_S:-60}

die() { echo "slurm_cluster: $*" >&2; exit 1; }

running() { pgrep -x "$1" >/dev/null 2>&1; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return
    fi
    [ "$(id -u)" = 0 ] || die "SLURM is not installed and installing it needs root"
    command -v apt-get >/dev/null || die "SLURM is not installed and there is no apt-get"
    echo "slurm_cluster: installing slurmctld slurmd slurm-client munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
    local cpus mem
    cpus=$(nproc)
    # Leave a little memory for the system; SLURM refuses a node that reports less.
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.95)}' /proc/meminfo)
    mkdir -p "$CONF_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd" "$LOG_DIR" "$RUN_DIR"
    cat >"$CONF.new" <<EOF
# Written by scripts/slurm_cluster.sh: a single-node test cluster.
ClusterName=harness
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=600
SchedulerType=sched/backfill
# Test all pending jobs every 2 s (default 60): jobs start within seconds here.
SchedulerParameters=sched_interval=2,bf_interval=5
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
    if [ -f "$CONF" ] && cmp -s "$CONF.new" "$CONF"; then
        rm -f "$CONF.new"
        return 1  # unchanged
    fi
    mv "$CONF.new" "$CONF"
}

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
    chmod 0400 /etc/munge/munge.key
    chmod 0755 /run/munge
    running munged || runuser -u munge -- /usr/sbin/munged
    munge -n | unmunge >/dev/null || die "munge does not work (see /var/log/munge)"
}

node_ready() {
    local state
    state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null | head -n1)
    case "$state" in
        idle* | mix* | alloc*) return 0 ;;
        down* | drain* | drng* | fail*)
            scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
            return 1 ;;
        *) return 1 ;;
    esac
}

start() {
    install_packages
    [ "$(id -u)" = 0 ] || die "starting the daemons needs root"
    local changed=0
    write_conf && changed=1
    start_munge
    if [ $changed = 1 ] && running slurmctld; then
        scontrol reconfigure >/dev/null  # a newer config for running daemons
    fi
    running slurmctld || slurmctld
    running slurmd || slurmd
    local deadline=$((SECONDS + WAIT_S))
    until scontrol ping 2>/dev/null | grep -q UP && node_ready; do
        [ $SECONDS -lt $deadline ] || die "node not idle after ${WAIT_S}s (see $LOG_DIR)"
        sleep 1
    done
    until timeout 20 srun -N1 -n1 hostname >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "srun does not answer after ${WAIT_S}s (see $LOG_DIR)"
        sleep 1
    done
    echo "slurm_cluster: up ($HOST, $(nproc) CPUs, partition debug)"
}

stop_daemon() {
    local name=$1 pidfile=$2 pid
    if [ -f "$pidfile" ]; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$pidfile"
    if running "$name"; then echo "slurm_cluster: $name still runs (not started here?)" >&2; fi
}

stop() {
    stop_daemon slurmd "$RUN_DIR/slurmd.pid"
    stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
    stop_daemon munged /run/munge/munged.pid
    echo "slurm_cluster: stopped"
}

status() {
    local rc=0 d
    for d in munged slurmctld slurmd; do
        if running "$d"; then echo "$d: running"; else echo "$d: stopped"; rc=1; fi
    done
    if [ $rc = 0 ]; then sinfo; fi
    return $rc
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: bash scripts/slurm_cluster.sh start|stop|status" >&2; exit 2 ;;
esac
