#!/bin/bash
# Prepares a Debian/Ubuntu host for kfarm, as root: the container engine, the image bootstrapper and the
# tools kfarm and its tests call. Idempotent: a second run installs nothing and starts nothing.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-host: run as root (sudo $0)" >&2
  exit 2
fi

# docker.io: the engine; mmdebstrap + debian-archive-keyring: registry-free builder images; xz-utils: the
# archive's package indexes; binutils: reading .modinfo in tests; gpgv: checking signed Release files;
# qemu-system-x86 + busybox-static: `kfarm verify` boots each target's real kernel with an initramfs around
# busybox to load the built modules; dpkg: dpkg-deb unpacks the kernel image packages; cpio + libarchive-tools:
# the tests list the generated initramfs with independent tools; iproute2: the engine-loss tests give the second
# dockerd they start a bridge of its own; zstd: base images kept in the cache dir as compressed root filesystems;
# apt-utils (apt-ftparchive), gnupg, createrepo-c and rpm (rpmsign): `kfarm publish` writes and signs apt and yum
# repositories on the host, where the signing key stays.
packages=(docker.io mmdebstrap debian-archive-keyring xz-utils binutils gpgv ca-certificates curl
  qemu-system-x86 busybox-static dpkg cpio libarchive-tools iproute2 zstd apt-utils gnupg createrepo-c rpm)

# chromium (Debian's; on Ubuntu the package is a snap stub): the tests look at report.html in a real browser.
if [ "$(. /etc/os-release && echo "$ID")" = debian ]; then packages+=(chromium); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup-host: starting dockerd"
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start docker
  else
    nohup dockerd >/var/log/kfarm-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "setup-host: dockerd did not come up (see /var/log/kfarm-dockerd.log)" >&2; exit 3; }
fi
echo "setup-host: ready ($(docker version --format 'engine {{.Server.Version}}'), $(mmdebstrap --version))"
