#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, from Debian's packages (slurm-wlm, munge), for
# the tests marked `slurm` and for trying `reproduce --launcher slurm` on a real scheduler.
#   scripts/slurm-cluster.sh install   apt-get install slurm-wlm munge (root; about 20 s)
#   scripts/slurm-cluster.sh start     munge key, slurm.conf for this machine, munged, slurmctld,
#                                      slurmd; waits until the node is idle (idempotent)
#   scripts/slurm-cluster.sh stop      stops the daemons this script started
#   scripts/slurm-cluster.sh status    one line: up (node state) or down
# Needs root (the daemons run as root; slurm.conf goes to /etc/slurm). No accounting daemon:
# `sacct` does not work here, as on some small clusters; winn-robust does not need it.
# State, logs and pid files: $WINN_SLURM_DIR (default /var/tmp/winn-robust-slurm).
set -euo pipefail
DIR=${WINN_SLURM_DIR:-/var/tmp/winn-robust-slurm}
CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)

say() { echo "slurm-cluster: $*"; }

is_up() { timeout 5 sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated|completing)'; }

install() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
    [ "$(id -u)" = 0 ] || { say "installing slurm-wlm and munge needs root"; exit 1; }
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) >/dev/null 2>&1 \
        || { say "apt-get install slurm-wlm munge failed"; exit 1; }
}

write_conf() {
    local node cpus mem
    node=$(slurmd -C | head -n 1)                 # NodeName=... CPUs=... RealMemory=... for this machine
    cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    mkdir -p /etc/slurm "$DIR/state" "$DIR/spool"
    cat >"$CONF.tmp" <<CONF
# written by winn-robust's scripts/slurm-cluster.sh: one node, this machine
ClusterName=winn
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=30
MinJobAge=300
NodeName=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
    mv "$CONF.tmp" "$CONF"
}

start() {
    [ "$(id -u)" = 0 ] || { say "starting the daemons needs root"; exit 1; }
    command -v slurmctld >/dev/null || install
    if is_up; then say "up ($(sinfo -h -o '%N %T %c CPUs'))"; return 0; fi
    write_conf
    mkdir -p /run/munge && chown munge:munge /run/munge
    if ! pgrep -x munged >/dev/null; then
        [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 2>/dev/null;
                                         chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
        runuser -u munge -- /usr/sbin/munged
    fi
    [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null || /usr/sbin/slurmctld
    [ -f "$DIR/slurmd.pid" ] && kill -0 "$(cat "$DIR/slurmd.pid")" 2>/dev/null || /usr/sbin/slurmd
    for _ in $(seq 60); do
        if is_up; then say "up ($(sinfo -h -o '%N %T %c CPUs'))"; return 0; fi
        timeout 5 scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
        sleep 0.5
    done
    say "did not come up in 30 s; see $DIR/slurmctld.log and $DIR/slurmd.log"; exit 1
}

stop() {
    for daemon in slurmd slurmctld; do
        if [ -f "$DIR/$daemon.pid" ]; then
            pid=$(cat "$DIR/$daemon.pid"); kill "$pid" 2>/dev/null || true
            for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            rm -f "$DIR/$daemon.pid"
        fi
    done
    say "stopped (munged left running)"
}

case "${1:-status}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) if is_up; then say "up ($(sinfo -h -o '%N %T %c CPUs'))"; else say "down"; exit 1; fi ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
