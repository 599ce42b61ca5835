#!/usr/bin/env bash
# Brings up a single-node Slurm cluster on this machine (Debian's slurm-wlm
# and munge) so CI can push a real sweep through sbatch. Run as root.
#
# Idempotent: packages are installed only when missing, and daemons that are
# already running with the same slurm.conf are left alone. It does not rely
# on systemd (CI containers and VMs usually have none): munged, slurmctld and
# slurmd are started directly as daemons.
#
# Environment:
#   SLURM_UP_TIMEOUT  seconds to wait for the node to become idle (default 60)
set -euo pipefail

timeout_s="${SLURM_UP_TIMEOUT:-60}"
conf_dir=/etc/slurm
conf="$conf_dir/slurm.conf"
log_dir=/var/log/slurm
spool=/var/spool/slurm
run_dir=/run/slurm
ctld_pid="$run_dir/slurmctld.pid"
slurmd_pid="$run_dir/slurmd.pid"
munge_key=/etc/munge/munge.key

die() {
  echo "slurm-up: $*" >&2
  for f in /var/log/munge/munged.log "$log_dir/slurmctld.log" "$log_dir/slurmd.log"; do
    if [ -f "$f" ]; then
      echo "---- last lines of $f ----" >&2
      tail -n 30 "$f" >&2
    fi
  done
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"

# --- packages ---------------------------------------------------------------
missing=()
for cmd in slurmctld slurmd sbatch munged; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$cmd")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "slurm-up: installing slurm-wlm and munge (missing: ${missing[*]})"
  apt-get update -q
  # The packages' maintainer scripts try to start services; without an init
  # system that fails harmlessly, and we start the daemons ourselves below.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge
fi
export PATH="$PATH:/usr/sbin:/sbin"

# --- munge ------------------------------------------------------------------
if ! id munge >/dev/null 2>&1; then
  die "user 'munge' does not exist after installing munge"
fi
install -d -m 0700 -o munge -g munge /etc/munge
install -d -m 0711 -o munge -g munge /var/lib/munge
install -d -m 0700 -o munge -g munge /var/log/munge
install -d -m 0755 -o munge -g munge /run/munge
if [ ! -s "$munge_key" ]; then
  echo "slurm-up: creating $munge_key"
  dd if=/dev/urandom of="$munge_key" bs=1 count=1024 status=none
fi
chown munge:munge "$munge_key"
chmod 0400 "$munge_key"

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
  echo "slurm-up: starting munged"
  runuser -u munge -- /usr/sbin/munged || die "munged failed to start"
  for _ in $(seq 1 50); do munge_ok && break; sleep 0.1; done
  munge_ok || die "munged started but munge -n | unmunge fails"
fi

# --- slurm.conf -------------------------------------------------------------
host="$(hostname -s)"
cpus="$(nproc)"
mem_total="$(free -m | awk '/^Mem:/ {print $2}')"
# Slurm drains a node whose configured memory exceeds what slurmd measures,
# so claim a little less than the total.
margin=$(( mem_total / 20 ))
[ "$margin" -lt 256 ] && margin=256
real_mem=$(( mem_total - margin ))
[ "$real_mem" -lt 1 ] && real_mem=1

new_conf="$(mktemp)"
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
# Written by tools/ci/slurm-up.sh: a single-node cluster for CI.
ClusterName=longctx-ci
# The address is given explicitly so a host name that does not resolve
# (common in containers) cannot stop slurmd from reaching the controller.
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPidFile=${ctld_pid}
SlurmdPidFile=${slurmd_pid}
StateSaveLocation=${spool}/ctld
SlurmdSpoolDir=${spool}/d
SlurmctldLogFile=${log_dir}/slurmctld.log
SlurmdLogFile=${log_dir}/slurmd.log
SchedulerType=sched/backfill
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
Waittime=0
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${real_mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

install -d -m 0755 "$conf_dir" "$log_dir" "$run_dir" "$spool/ctld" "$spool/d"

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

conf_changed=1
if [ -f "$conf" ] && cmp -s "$new_conf" "$conf"; then
  conf_changed=0
fi
if [ "$conf_changed" -eq 1 ]; then
  echo "slurm-up: writing $conf (node $host, $cpus CPUs, ${real_mem} MB)"
  install -m 0644 "$new_conf" "$conf"
  # Daemons we started earlier with another configuration must restart to
  # pick it up; stop them by their pid files only.
  for pf in "$slurmd_pid" "$ctld_pid"; do
    if pid_alive "$pf"; then
      pid="$(cat "$pf")"
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
fi

# --- daemons ----------------------------------------------------------------
if ! pid_alive "$ctld_pid"; then
  echo "slurm-up: starting slurmctld"
  # -c: start from a clean state, so a stale drained node or job from an
  # earlier run of this script cannot block the new cluster.
  slurmctld -c -f "$conf" || die "slurmctld failed to start"
fi
if ! pid_alive "$slurmd_pid"; then
  echo "slurm-up: starting slurmd"
  slurmd -f "$conf" || die "slurmd failed to start"
fi

# --- wait for the node ------------------------------------------------------
deadline=$(( $(date +%s) + timeout_s ))
resumed=0
while :; do
  state="$(sinfo -h -N -n "$host" -o '%t' 2>/dev/null | head -n 1 || true)"
  case "$state" in
    idle|mix|alloc|comp)
      echo "slurm-up: node $host is $state; partition debug is ready"
      exit 0
      ;;
    drain*|down*|drng*)
      # A node left down or drained by an earlier run: ask for it back once.
      if [ "$resumed" -eq 0 ]; then
        scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
        resumed=1
      fi
      ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    die "node $host not idle after ${timeout_s}s (sinfo state: '${state:-none}')"
  fi
  sleep 1
done
