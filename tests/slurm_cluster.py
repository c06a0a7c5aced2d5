"""A real single-node Slurm cluster on localhost for the tests: munged, slurmctld and slurmd from Debian's packages
(`make slurm` installs them), configured in a temporary folder (SLURM_CONF points there) and stopped by PID.

Facts this relies on, checked on this project's machine (see ../shared/notes/slurm-single-node.md):
munged refuses to run as root, so it runs as `munge`; RealMemory must be set or any --mem is refused; GPUs are two
character devices declared as GRES, so --gres=gpu:1 sets CUDA_VISIBLE_DEVICES with no GPU; there is no accounting
database, so `sacct` is a stand-in that answers from `squeue` (slurmctld keeps ended jobs for MinJobAge)."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PROGRAMS = ('munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scancel', 'sinfo')

def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None and not Path('/usr/sbin', p).exists()]

SACCT = r'''#!/usr/bin/env bash
# sacct stand-in for a cluster without accounting: "JobID|State|NodeList" rows from squeue (submitit reads these).
ids=""
while [ $# -gt 0 ]; do case "$1" in -j) ids="$2"; shift 2;; -j*) ids="${1#-j}"; shift;; *) shift;; esac; done
echo "JobID|State|NodeList"
[ -n "$ids" ] && squeue -h -r --states=all -j "$ids" -o '%i|%T|%N' 2>/dev/null
exit 0
'''

def stop_all(folder) -> list[str]:
    "Stop every daemon whose pid file lies below `folder` (the Makefile's trap, should a test run die)."
    stopped = []
    for pid_file in sorted(Path(folder).rglob('*.pid'), key=lambda p: 'munge' in str(p)):   # munged last
        _stop(pid_file); stopped.append(str(pid_file))
    return stopped

def _conf(d: Path, host: str, cpus: int) -> str:
    return f"""ClusterName=ci
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
GresTypes=gpu
MailProg=/bin/true
MinJobAge=600
KillWait=5
SchedulerParameters=batch_sched_delay=0,sched_interval=2
NodeName={host} CPUs={cpus} RealMemory=8000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _stop(pid_file: Path, timeout: float = 20):
    try: pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError): return
    try: os.kill(pid, signal.SIGTERM)
    except ProcessLookupError: return
    end = time.time() + timeout
    while time.time() < end:
        try: os.kill(pid, 0)
        except ProcessLookupError: return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError): os.kill(pid, signal.SIGKILL)

@contextlib.contextmanager
def slurm_cluster(cpus: int | None = None):
    """Start the cluster; yields the environment (SLURM_CONF, PATH with the sacct stand-in) the tests pass on.
    Every daemon is stopped by the PID in its pid file, also when the block raises."""
    if os.geteuid() != 0: raise RuntimeError('the test cluster runs its daemons as root (munged as munge)')
    parent = Path(os.environ.get('RATIO_LOSSES_SLURM_DIR') or tempfile.gettempdir()).resolve()
    for a in (parent, *parent.parents):             # munged runs as munge: it must be able to reach its folder
        if not a.stat().st_mode & 0o001:
            raise RuntimeError(f"RATIO_LOSSES_SLURM_DIR: {a} is not searchable by other users (munged runs as munge); "
                               f"chmod o+x {a} or pick another folder")
    d = Path(tempfile.mkdtemp(prefix='ratio-losses-slurm-', dir=parent))
    os.chmod(d, 0o755)
    host = socket.gethostname().split('.')[0]
    for sub in ('state', 'spool', 'bin', 'munge'): (d/sub).mkdir()
    (d/'slurm.conf').write_text(_conf(d, host, cpus or os.cpu_count() or 2))
    for i, minor in enumerate((3, 5)):                  # two fake GPUs: character devices (plain files are refused)
        subprocess.run(['mknod', str(d/f'fakegpu{i}'), 'c', '1', str(minor)], check=True)
    (d/'gres.conf').write_text(f"NodeName={host} Name=gpu File={d}/fakegpu[0-1]\n")
    sacct = d/'bin'/'sacct'; sacct.write_text(SACCT); sacct.chmod(0o755)
    env = {**os.environ, 'SLURM_CONF': str(d/'slurm.conf'), 'PATH': f"{d/'bin'}:{os.environ['PATH']}"}
    munge_pid = d/'munge'/'munged.pid'
    try:
        for m in ('/run/munge', '/var/log/munge', '/var/lib/munge', '/etc/munge'):
            Path(m).mkdir(parents=True, exist_ok=True); shutil.chown(m, 'munge', 'munge')
        shutil.chown(d/'munge', 'munge', 'munge')
        if not Path('/etc/munge/munge.key').exists():
            subprocess.run(['runuser', '-u', 'munge', '--', '/usr/sbin/mungekey', '--create'], check=True)
        sock = d/'munge'/'munge.socket'
        subprocess.run(['runuser', '-u', 'munge', '--', '/usr/sbin/munged', f'--socket={sock}', f'--pid-file={munge_pid}',
                        f'--log-file={d}/munge/munged.log', f'--seed-file={d}/munge/munged.seed'], check=True)
        # slurm finds munge's socket through AuthInfo; point it at ours
        conf = (d/'slurm.conf').read_text().replace('AuthInfo=cred_expire=5', f'AuthInfo=socket={sock},cred_expire=5')
        (d/'slurm.conf').write_text(conf)
        subprocess.run(['/usr/sbin/slurmctld'], env=env, check=True)
        subprocess.run(['/usr/sbin/slurmd'], env=env, check=True)
        end = time.time() + 60
        while time.time() < end:
            state = subprocess.run(['sinfo', '-h', '-o', '%t'], env=env, capture_output=True, text=True).stdout.strip()
            if state in ('idle', 'mix', 'alloc'): break
            time.sleep(0.2)
        else: raise RuntimeError(f"the test cluster's node did not come up (sinfo: {state!r}); logs in {d}")
        yield env
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(['scancel', '--full', '-u', 'root'], env=env, timeout=10, capture_output=True)
        for pid_file in (d/'slurmd.pid', d/'slurmctld.pid', munge_pid): _stop(pid_file)
        if os.environ.get('RATIO_LOSSES_KEEP_SLURM') is None: shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':   # python tests/slurm_cluster.py stop FOLDER
    import sys
    if len(sys.argv) != 3 or sys.argv[1] != 'stop': sys.exit('usage: python tests/slurm_cluster.py stop FOLDER')
    for f in stop_all(sys.argv[2]): print(f'stopped the daemon of {f}')
