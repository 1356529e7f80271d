#!/usr/bin/env bash
# ensure_apt_packages PKG...: install the Debian packages that are missing (as root; waits for another apt
# or dpkg, such as a fresh machine's unattended upgrades, up to 10 minutes). Sourced by the set-up scripts.

wait_for_apt() {
  local lock waited=0
  for lock in /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock; do
    [[ -e $lock ]] || continue
    # apt and dpkg hold fcntl locks: ask for one without blocking until nobody holds it
    until python3 -c 'import fcntl, sys; fcntl.lockf(open(sys.argv[1], "a"), fcntl.LOCK_EX | fcntl.LOCK_NB)' \
        "$lock" 2>/dev/null; do
      ((waited == 0)) && echo "setup: waiting for another apt or dpkg to finish ($lock)" >&2
      ((waited += 5))
      ((waited <= 600)) || { echo "setup: $lock still held after 10 minutes" >&2; return 1; }
      sleep 5
    done
  done
}

ensure_apt_packages() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: please install (as root): apt-get install ${missing[*]}" >&2
    return 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  wait_for_apt
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# step NAME COMMAND...: run a set-up step and say how long it took
step() {
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo "setup: $name: $((SECONDS - start)) s" >&2
}
