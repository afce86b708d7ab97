#!/usr/bin/env bash
# A real SMB share on loopback, mounted through a FUSE SMB client, for the
# SMB tests and benchmarks: Debian's Samba (smbd) bound to 127.0.0.1 only,
# with a password user and one share, and smbnetfs (libsmbclient, SMB 3.1.1)
# mounted on a folder. Installs both with apt-get when missing (as root).
# Everything (config, state, locks, logs, the shared folder, the mount point)
# lives under <dir>, so the system's Samba files are never touched.
#
#   scripts/smb.sh start [dir]   start it (idempotent), print the env file path
#   scripts/smb.sh stop  [dir]   unmount and stop what start started
#
# The env file (<dir>/env) holds BRCACHE_SMB_MOUNT (a folder of the share,
# seen through the FUSE mount: repositories go under it) and
# BRCACHE_SMB_EXPORT (the same folder on the server's side, for tests that
# need to look behind the client).
set -euo pipefail

action=${1:-start}
dir=${2:-${BRCACHE_SMB_DIR:-/tmp/brcache-smb}}
port=${BRCACHE_SMB_PORT:-4455}
user=brcache
share=brcache

ensure_packages() {
  if command -v smbd > /dev/null && command -v smbnetfs > /dev/null && command -v smbpasswd > /dev/null; then return; fi
  echo "smb: installing Debian's samba and smbnetfs (once per machine)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Package lists are fetched when there are none, or when an install with
  # the lists there failed (they may be stale). Another install may hold
  # dpkg's lock for a while: wait and retry.
  local update=0
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2> /dev/null)" ] || update=1
  for attempt in $(seq 1 30); do
    if { [ "$update" = 0 ] || apt-get update -qq >&2; } && apt-get install -y -qq --no-install-recommends samba smbnetfs >&2; then
      return
    fi
    update=1
    echo "smb: apt-get failed (attempt $attempt), retrying in 10 s" >&2
    sleep 10
  done
  echo "smb: cannot install samba and smbnetfs" >&2
  exit 1
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
mounted() { grep -qs " $dir/mnt fuse" /proc/mounts; }

write_config() {
  mkdir -p "$dir"/{etc,state,cache,lock,pid,log,private,export,mnt,home/.smb}
  chmod 755 "$dir" "$dir/export"
  cat > "$dir/etc/smb.conf" <<CONF
[global]
  interfaces = lo
  bind interfaces only = yes
  smb ports = $port
  disable netbios = yes
  server role = standalone server
  server min protocol = SMB2
  map to guest = never
  state directory = $dir/state
  cache directory = $dir/cache
  lock directory = $dir/lock
  pid directory = $dir/pid
  private dir = $dir/private
  ncalrpc dir = $dir/state/ncalrpc
  log file = $dir/log/smbd.log
  max log size = 1000
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes

[$share]
  path = $dir/export
  read only = no
  valid users = $user
  force user = root
  create mask = 0644
  directory mask = 0755
CONF
  # The client side: libsmbclient's smb.conf and smbnetfs's own config,
  # found through HOME (smbnetfs reads ~/.smb), both of our own.
  cat > "$dir/home/.smb/smb.conf" <<CONF
[global]
  client min protocol = SMB2
  client max protocol = SMB3
CONF
  cat > "$dir/home/.smb/smbnetfs.conf" <<CONF
auth "$user" "$(cat "$dir/password")"
smb_query_browsers false
show_hidden_hosts true
CONF
  chmod 600 "$dir/home/.smb/smbnetfs.conf"
}

start() {
  ensure_packages
  mkdir -p "$dir"
  [ -f "$dir/password" ] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/password"
  write_config
  id "$user" > /dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
  if ! running "$dir/smbd.pid"; then
    # The user's SMB password, in our own passdb (private dir).
    printf '%s\n%s\n' "$(cat "$dir/password")" "$(cat "$dir/password")" | smbpasswd -c "$dir/etc/smb.conf" -s -a "$user" > /dev/null
    # A session of its own: smbd signals its whole process group when it
    # stops, which must not be the caller's.
    setsid smbd -s "$dir/etc/smb.conf" --foreground --no-process-group > "$dir/log/smbd.out" 2>&1 < /dev/null &
    echo $! > "$dir/smbd.pid"
    local up=0
    for _ in $(seq 1 100); do
      if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then up=1; break; fi
      sleep 0.1
    done
    [ "$up" = 1 ] || { echo "smb: smbd does not listen on 127.0.0.1:$port (see $dir/log)" >&2; exit 1; }
  fi
  if ! mounted; then
    HOME="$dir/home" setsid smbnetfs "$dir/mnt" -f -o "config=$dir/home/.smb/smbnetfs.conf" > "$dir/log/smbnetfs.out" 2>&1 < /dev/null &
    echo $! > "$dir/smbnetfs.pid"
    for _ in $(seq 1 100); do mounted && break; sleep 0.1; done
    mounted || { echo "smb: smbnetfs did not mount $dir/mnt (see $dir/log/smbnetfs.out)" >&2; exit 1; }
  fi
  local root="$dir/mnt/127.0.0.1:$port/$share"
  local ok=0
  for _ in $(seq 1 100); do
    if ls "$root" > /dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  [ "$ok" = 1 ] || { echo "smb: the share does not answer at $root (see $dir/log)" >&2; exit 1; }
  cat > "$dir/env" <<ENV
BRCACHE_SMB_MOUNT=$root
BRCACHE_SMB_EXPORT=$dir/export
ENV
  echo "$dir/env"
}

stop() {
  if mounted; then fusermount -u "$dir/mnt" 2> /dev/null || umount "$dir/mnt" 2> /dev/null || umount -l "$dir/mnt" 2> /dev/null || true; fi
  for name in smbnetfs smbd; do
    local pidfile="$dir/$name.pid"
    if running "$pidfile"; then kill "$(cat "$pidfile")" 2> /dev/null || true; fi
    for _ in $(seq 1 50); do running "$pidfile" || break; sleep 0.1; done
    if running "$pidfile"; then kill -9 "$(cat "$pidfile")" 2> /dev/null || true; fi
    rm -f "$pidfile"
  done
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop [dir]" >&2; exit 2 ;;
esac
