#!/bin/bash
# The real thing, as a user of the release has it: in a container of the release (with network), apt installs
# the kernel's headers and the *-dkms package (with its Depends, as on a real machine), then the release's own
# dkms builds it for that kernel. Usage: real-dkms-build.sh KERNELRELEASE PACKAGE [PROVIDES]
# With PROVIDES, stdin is a tar of a DKMS module tree that stands in for a dependency too large to build here
# (nvidia-fs-dkms's nvidia-kernel-dkms): dkms installs it first, and a stub package providing PROVIDES at the
# module's version satisfies the package's Depends on it, so apt installs the rest as usual.
# Prints `build <exit code>` and, per built module, `module <name> <vermagic>` (compression suffix dropped).
set -uo pipefail
kver=$1 pkg=$2 provides=${3:-}
export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
# The package or its Depends may be in contrib, non-free or non-free-firmware: every component, as kfarm reads them.
cat > /etc/apt/sources.list <<SOURCES
deb http://deb.debian.org/debian $codename main contrib non-free non-free-firmware
deb http://deb.debian.org/debian $codename-updates main contrib non-free non-free-firmware
deb http://deb.debian.org/debian-security $codename-security main contrib non-free non-free-firmware
SOURCES
rm -f /etc/apt/sources.list.d/*
apt-get -qq update >&2 || exit 90

# The value of VAR in the dkms.conf of directory DIR, read as dkms reads it (sourced, kernelver set).
conf_value() { (set +u; kernelver=$kver; cd "$1" && . ./dkms.conf >/dev/null 2>&1; eval echo "\$$2"); }

install_stand_in() {
  mkdir -p /tmp/with && tar -x -C /tmp/with || exit 92
  local name version
  name=$(conf_value /tmp/with PACKAGE_NAME) version=$(conf_value /tmp/with PACKAGE_VERSION)
  apt-get install -y -qq --no-install-recommends "linux-headers-$kver" dkms > /tmp/apt.log 2>&1 || { cat /tmp/apt.log >&2; exit 91; }
  cp -a /tmp/with "/usr/src/$name-$version"
  dkms install -m "$name" -v "$version" -k "$kver" >&2 || exit 93
  mkdir -p /tmp/stub/DEBIAN
  printf 'Package: %s-stand-in\nVersion: %s\nArchitecture: all\nMaintainer: kfarm tests <tests@kfarm.invalid>\nProvides: %s (= %s)\nDescription: stand-in\n' \
    "$name" "$version" "$provides" "$version" > /tmp/stub/DEBIAN/control
  dpkg-deb -b /tmp/stub /tmp/stand-in.deb >&2 && dpkg -i /tmp/stand-in.deb >&2 || exit 94
}
[ -n "$provides" ] && install_stand_in

# The build below is the one compared; building it twice would double zfs's ten minutes. So unless the stand-in
# needed the headers first, the package goes in before them (its postinst then only adds it to dkms) and the
# headers' dkms hook is taken out before they go in. Its postinst may still build it, and may fail doing so.
apt-get install -y -qq --no-install-recommends "$pkg" > /tmp/apt.log 2>&1
dpkg-query -W -f '${Status}' "$pkg" | grep -q 'ok unpacked\|ok installed\|half-configured' || { cat /tmp/apt.log >&2; exit 91; }
rm -f /etc/kernel/header_postinst.d/dkms /etc/kernel/postinst.d/dkms
apt-get install -y -qq --no-install-recommends "linux-headers-$kver" > /tmp/apt-headers.log 2>&1
[ -e "/lib/modules/$kver/build/Makefile" ] || { cat /tmp/apt-headers.log >&2; exit 91; }
tree=$(dpkg -L "$pkg" | grep -m1 -E '^/usr/src/[^/]+/dkms.conf$')
dir=$(basename "$(dirname "$tree")")
module=$(conf_value "$(dirname "$tree")" PACKAGE_NAME)
version=${dir#"$module"-}
dkms build --force -m "$module" -v "$version" -k "$kver" > /tmp/build.log 2>&1
rc=$?
tail -20 /tmp/build.log >&2
echo "build $rc"
for ko in $(find "/var/lib/dkms/$module/$version/$kver" -path '*/module/*.ko*' 2>/dev/null); do
  name=$(basename "$ko")
  echo "module ${name%%.ko*} $(modinfo -F vermagic "$ko")"
done
