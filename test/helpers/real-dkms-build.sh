#!/bin/bash
# The real thing, as a user of the release has it: in a container of the release (with network), apt installs
# the kernel's headers and the *-dkms package (with its Depends, as on a real machine), then the release's own
# dkms builds it for that kernel. Usage: real-dkms-build.sh KERNELRELEASE PACKAGE
# Prints `build <exit code>` and, per built module, `module <name> <vermagic>` (compression suffix dropped).
set -uo pipefail
kver=$1 pkg=$2
export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
# The package may be in contrib or non-free (broadcom-sta, nvidia-fs): every component, as kfarm reads them.
cat > /etc/apt/sources.list <<SOURCES
deb http://deb.debian.org/debian $codename main contrib non-free
deb http://deb.debian.org/debian $codename-updates main contrib non-free
deb http://deb.debian.org/debian-security $codename-security main contrib non-free
SOURCES
rm -f /etc/apt/sources.list.d/*
apt-get -qq update >&2 || exit 90
# Its postinst may already build it (dkms autoinstall) and may fail doing so; the build below is the one compared.
apt-get install -y -qq --no-install-recommends "linux-headers-$kver" "$pkg" > /tmp/apt.log 2>&1
dpkg-query -W -f '${Status}' "$pkg" | grep -q 'ok unpacked\|ok installed\|half-configured' || { cat /tmp/apt.log >&2; exit 91; }
tree=$(dpkg -L "$pkg" | grep -m1 -E '^/usr/src/[^/]+/dkms.conf$')
dir=$(basename "$(dirname "$tree")")
module=$(set +u; kernelver=$kver; cd "$(dirname "$tree")" && . ./dkms.conf >/dev/null 2>&1; echo "$PACKAGE_NAME")
version=${dir#"$module"-}
dkms build --force -m "$module" -v "$version" -k "$kver" > /tmp/build.log 2>&1
rc=$?
tail -20 /tmp/build.log >&2
echo "build $rc"
for ko in $(find "/var/lib/dkms/$module/$version/$kver" -path '*/module/*.ko*' 2>/dev/null); do
  name=$(basename "$ko")
  echo "module ${name%%.ko*} $(modinfo -F vermagic "$ko")"
done
