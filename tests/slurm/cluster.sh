#!/usr/bin/env bash
# A throwaway one-node SLURM cluster on localhost, with accounting, for tests.
#
#   tests/slurm/cluster.sh up      -> prints the cluster directory (only line on stdout)
#   tests/slurm/cluster.sh down DIR
#
# `up` installs Debian's slurmctld, slurmd, slurmdbd, slurm-client, munge and
# mariadb-server if they are missing, writes every config, socket, database and
# log into a private directory, starts munged, mariadbd, slurmdbd, slurmctld and
# `slurmd -N localhost` there (recording their pids), registers the cluster,
# an account and the current user with sacctmgr, and waits for the node to be
# idle. Clients find the cluster through PATH=DIR/bin:$PATH (shims that set
# SLURM_CONF=DIR/slurm.conf); nothing in /etc is touched, and ports are free
# ones picked at start, so a real SLURM or MariaDB on the machine is left alone.
# `down` cancels the cluster's jobs, stops exactly the pids `up` started and
# removes the directory. A failed `up` tears down whatever it started.
#
# Exit codes: 0 ok; 77 the packages are missing and cannot be installed here
# (the reason is on stderr: callers skip, never pass); anything else: failure.
set -euo pipefail

SKIP=77
PACKAGES=(slurmctld slurmd slurmdbd slurm-client munge mariadb-server)
CLUSTER=expmap
ACCOUNT=expmap_test
# The fake node: SlurmdParameters=config_overrides lets it claim more than the
# machine has, so a profile's real per-rule requests (8 CPUs, 32 GB) are schedulable.
NODE_CPUS=${EXPMAP_SLURM_CPUS:-16}
NODE_MEM_MB=${EXPMAP_SLURM_MEM_MB:-131072}
NODE_GPUS=2
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

have_binaries() {
    local b
    for b in slurmctld slurmd slurmdbd sbatch sacct sacctmgr sinfo munged mungekey \
        mariadbd mariadb-install-db mariadb mariadb-admin; do
        command -v "$b" >/dev/null || return 1
    done
}

# Install the packages if needed; exit $SKIP with the reason if we cannot.
ensure_packages() {
    have_binaries && return 0
    local t0=$SECONDS
    log "installing ${PACKAGES[*]}"
    if ! command -v apt-get >/dev/null; then
        log "SKIP: SLURM packages are missing and there is no apt-get to install them"
        exit "$SKIP"
    fi
    # Keep package scripts from starting system-wide daemons (Docker's usual trick).
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    local apt=(apt-get install -y -q --no-install-recommends "${PACKAGES[@]}") ok=0 out
    out=$(mktemp)
    export DEBIAN_FRONTEND=noninteractive
    if "${apt[@]}" >"$out" 2>&1 || { apt-get update -q && "${apt[@]}"; } >>"$out" 2>&1; then
        ok=1
    fi
    [[ $made_policy -eq 1 ]] && rm -f "$policy"
    cat "$out" >&2
    if [[ $ok -ne 1 ]] || ! have_binaries; then
        log "SKIP: could not install ${PACKAGES[*]} with apt-get:" \
            "$(grep '^E:' "$out" | tail -n 1)"
        rm -f "$out"
        exit "$SKIP"
    fi
    rm -f "$out"
    log "packages installed in $((SECONDS - t0))s"
}

# A TCP port nobody listens on (the kernel could hand it out meanwhile; unlikely).
free_port() {
    local p
    for p in $(shuf -i 20000-60000 -n 100); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for SECONDS WHAT COMMAND...: retry COMMAND every half second until it
# succeeds, for at most SECONDS of wall time.
wait_for() {
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what not ready in time"
        sleep 0.5
    done
}

# start NAME COMMAND...: run a daemon in the foreground, in the background, and
# record its pid so that `down` stops exactly it.
start() {
    local name=$1
    shift
    "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
    echo "$name $!" >>"$DIR/pids"
    log "started $name (pid $!)"
}

write_configs() {
    local munge_socket=$DIR/munge/munge.socket.2 i
    mkdir -p "$DIR"/{munge,mysql,tmp,state,spool,log,dev}

    mungekey --create --keyfile="$DIR/munge/munge.key" 2>>"$DIR/log/mungekey.out"
    chmod 400 "$DIR/munge/munge.key"

    # Fake GPUs: SLURM 22.05 drains a node whose GPU gres has no File=, and
    # character devices (not plain files) give jobs CUDA_VISIBLE_DEVICES.
    for ((i = 0; i < NODE_GPUS; i++)); do mknod "$DIR/dev/nvidia$i" c 1 3; done

    cat >"$DIR/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$munge_socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
# Without DefMemPerCPU a job takes the whole node's memory: jobs run one at a time.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
GresTypes=gpu
# The executor plugin reads job states with sacct, so accounting is required.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
# Clients reach slurmdbd with this as their munge socket, not AuthInfo's.
AccountingStoragePass=$munge_socket
JobAcctGatherType=jobacct_gather/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$NODE_MEM_MB Gres=gpu:$NODE_GPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    echo "NodeName=localhost Name=gpu File=$DIR/dev/nvidia[0-$((NODE_GPUS - 1))]" \
        >"$DIR/gres.conf"

    # slurmdbd reads slurmdbd.conf from the directory of $SLURM_CONF; it must be 600.
    cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$munge_socket
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/slurmdbd.conf"

    # Client shims: with DIR/bin first in PATH every command finds this cluster.
    # SLURM_CONF alone is not enough: the executor's job step (slurm-jobstep)
    # drops all SLURM_* variables before its nested srun, and that srun would
    # then look for /etc/slurm/slurm.conf.
    mkdir -p "$DIR/bin"
    for cmd in sbatch srun squeue sacct sacctmgr scancel sinfo scontrol sstat; do
        printf '#!/bin/sh\nSLURM_CONF=%s exec /usr/bin/%s "$@"\n' "$DIR/slurm.conf" "$cmd" \
            >"$DIR/bin/$cmd"
        chmod 755 "$DIR/bin/$cmd"
    done
}

up() {
    local t0=$SECONDS
    # Installing, mknod and daemons running as SlurmUser=root all need root.
    if [[ $(id -u) -ne 0 ]]; then
        log "SKIP: a private SLURM cluster needs root (apt-get, mknod, SlurmUser=root)"
        exit "$SKIP"
    fi
    ensure_packages
    DIR=$(mktemp -d /tmp/expmap-slurm.XXXXXX)
    touch "$DIR/pids"
    # From here on, a failure stops what was started and removes the directory.
    trap 'bring_up_failed' EXIT
    trap 'exit 130' INT TERM

    DB_PORT=$(free_port)
    DBD_PORT=$(free_port)
    CTLD_PORT=$(free_port)
    SLURMD_PORT=$(free_port)
    DB_PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    write_configs
    export SLURM_CONF=$DIR/slurm.conf

    start munged munged --foreground --force --socket="$DIR/munge/munge.socket.2" \
        --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
    wait_for 20 munged test -S "$DIR/munge/munge.socket.2"

    mariadb-install-db --no-defaults --user=root --datadir="$DIR/mysql" \
        --auth-root-authentication-method=socket --skip-test-db \
        >>"$DIR/log/mariadb-install-db.out" 2>&1 ||
        die "mariadb-install-db failed (see $DIR/log/mariadb-install-db.out)"
    start mariadbd mariadbd --no-defaults --user=root --datadir="$DIR/mysql" \
        --socket="$DIR/mysql.sock" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --pid-file="$DIR/mariadbd.pid" --tmpdir="$DIR/tmp" --log-error="$DIR/log/mariadbd.log" \
        --innodb-buffer-pool-size=32M --skip-log-bin
    wait_for 60 mariadbd mariadb-admin --no-defaults --socket="$DIR/mysql.sock" ping
    mariadb --no-defaults --socket="$DIR/mysql.sock" -u root <<EOF
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF

    start slurmdbd slurmdbd -D
    wait_for 60 slurmdbd port_open "$DBD_PORT"
    # Register before slurmctld starts, so it finds its cluster in the database.
    wait_for 30 "sacctmgr add cluster" sacctmgr -i add cluster "$CLUSTER"
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" >>"$DIR/log/sacctmgr.out"
    sacctmgr -i add user "$(id -un)" account="$ACCOUNT" cluster="$CLUSTER" \
        >>"$DIR/log/sacctmgr.out"

    start slurmctld slurmctld -D -f "$DIR/slurm.conf"
    wait_for 60 slurmctld scontrol ping
    start slurmd slurmd -D -N localhost -f "$DIR/slurm.conf"
    wait_for 60 "node localhost idle" node_idle

    trap - EXIT INT TERM
    log "cluster up in $((SECONDS - t0))s: PATH=$DIR/bin:\$PATH finds it; account $ACCOUNT"
    echo "$DIR"
}

# Show the daemons' logs (CI keeps only stderr), then stop what was started.
bring_up_failed() {
    local f
    log "bring-up failed; daemon logs follow, then teardown"
    for f in "$DIR"/log/*; do
        [[ -s $f ]] && { echo "==> $f" && tail -n 15 "$f"; } >&2
    done
    down "$DIR" || true
}

node_idle() { [[ $(sinfo -h -n localhost -o %T) == idle ]]; }

# Is PID still the daemon NAME we started, alive (not a zombie, not a recycled pid)?
is_ours() {
    local name=$1 pid=$2
    [[ -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "$name"* ]] &&
        ! grep -q '^State:.*zombie' "/proc/$pid/status" 2>/dev/null
}

down() {
    local dir=${1:?usage: cluster.sh down DIR} name pid i
    [[ -f $dir/pids && $(basename "$dir") == expmap-slurm.* ]] ||
        die "$dir is not a cluster made by cluster.sh up"
    # Jobs still running would leave slurmstepd processes behind: cancel them
    # through this cluster's own controller first.
    if [[ -f $dir/slurm.conf && -n $(SLURM_CONF=$dir/slurm.conf squeue -h -o %i 2>/dev/null) ]]
    then
        SLURM_CONF=$dir/slurm.conf scancel --full --user="$(id -un)" 2>/dev/null || true
        for ((i = 0; i < 20; i++)); do
            [[ -z $(SLURM_CONF=$dir/slurm.conf squeue -h -o %i 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
    # Stop in reverse start order: slurmd, slurmctld, slurmdbd, mariadbd, munged.
    tac "$dir/pids" | while read -r name pid; do
        is_ours "$name" "$pid" || continue
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do
            is_ours "$name" "$pid" || break
            sleep 0.25
        done
        if is_ours "$name" "$pid"; then
            log "$name (pid $pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $name (pid $pid)"
    done
    rm -rf -- "$dir"
}

case ${1:-} in
up) up ;;
down) down "${2:-}" ;;
*)
    echo "usage: $0 up | down DIR" >&2
    exit 2
    ;;
esac
