#!/bin/bash
# Runs in a container of a kfarm base image with NO network and an empty engine volume at /kfarm/vol. Unpacks
# one headers, -common or linux-kbuild .deb (read as a tar on stdin; kfarm downloaded it and checked it against
# the signed index) into the volume: the package's one directory (/usr/src/<dir> or /usr/lib/linux-kbuild-<v>)
# becomes the volume's root, and builders mount it read-only at that same path. No apt, no dpkg database, no
# maintainer scripts: DKMS needs the files only.
# $1 = the kernel's source architecture (x86, arm64, …) or "": other architectures' arch/ is left out.
# Prints what kfarm records about the package as `kfarm-fact <key>=<value>` lines: mount (where it goes),
# and for a kernel's own headers package: kernel, moddir (/lib/modules or /usr/lib/modules, where it ships
# <kver>/build), build and source (those links' targets), sighash and sig (from its .config).
set -euo pipefail
srcarch=${1:-}
vol=/kfarm/vol
debs=$(mktemp -d)
tar -x -C "$debs"
deb=$(echo "$debs"/*.deb)
# Listed first, not piped into grep: with pipefail, grep's early exit would fail dpkg-deb with SIGPIPE.
listing=$(dpkg-deb -c "$deb")
names=$(awk '{print $6}' <<<"$listing")
payload=$(grep -E '^\./usr/src/[^/]+/$|^\./usr/lib/linux-kbuild-[^/]+/$' <<<"$names" | grep -v '^\./usr/src/linux-kbuild-' || true)
if [ "$(wc -l <<<"$payload")" != 1 ] || [ -z "$payload" ]; then
  echo "kfarm: ${deb##*/} has not exactly one /usr/src/<dir> or /usr/lib/linux-kbuild-<v> directory: ${payload:-none}" >&2
  exit 1
fi
mount=${payload#.}
mount=${mount%/}
# The -common package (Architecture: all) carries arch/<a>/ of every architecture the kernel supports, a third
# of its files; a build uses only arch/$SRCARCH (known names only: an architecture not listed here is kept).
others=()
if [ -n "$srcarch" ]; then
  for a in alpha arc arm arm64 csky hexagon ia64 loongarch m68k microblaze mips nios2 openrisc parisc powerpc \
    riscv s390 sh sparc um x86 xtensa; do
    [ "$a" = "$srcarch" ] || others+=("--exclude=.$mount/arch/$a")
  done
fi
depth=$(tr -cd / <<<"$mount" | wc -c)
dpkg-deb --fsys-tarfile "$deb" |
  tar -x -C "$vol" --no-same-owner --strip-components=$((depth + 1)) --wildcards "${others[@]}" ".$mount/*"
echo "kfarm-fact mount=$mount"
outside=$(grep -v -E "^\.$mount/|^\./$|^\./usr/$|^\./usr/(src|lib|share)/|^\./(usr/)?lib/modules/" <<<"$names" || true)
[ -z "$outside" ] || echo "left out (outside $mount): $outside"
# A kernel's own headers package ships <moddir>/<kver>/build: where that is (bookworm /lib/modules, trixie
# /usr/lib/modules) is where packaging installs modules too.
link=$(grep -E ' \./(usr/)?lib/modules/[^/]+/build -> ' <<<"$listing" | head -1 || true)
if [ -n "$link" ]; then
  path=$(awk '{print $6}' <<<"$link")
  kernel=${path%/build}
  kernel=${kernel##*/}
  moddir=${path#.}
  moddir=${moddir%/*/build}
  echo "kfarm-fact kernel=$kernel"
  echo "kfarm-fact moddir=$moddir"
  echo "kfarm-fact build=$(awk '{print $8}' <<<"$link")"
  source=$(grep -F " .$moddir/$kernel/source -> " <<<"$listing" | awk '{print $8}' || true)
  [ -z "$source" ] || echo "kfarm-fact source=$source"
  config=$vol/.config
  if [ -r "$config" ]; then
    sed -n 's/^CONFIG_MODULE_SIG_HASH="\([A-Za-z0-9-]*\)"$/kfarm-fact sighash=\1/p' "$config"
    if grep -q '^CONFIG_MODULE_SIG=y' "$config"; then echo "kfarm-fact sig=y"; fi
  fi
fi
# linux-kbuild's host tools must run here: a library the base lacks would fail every build, so say it now.
if [ -x "$vol/scripts/mod/modpost" ]; then
  missing=$(ldd "$vol/scripts/mod/modpost" | grep 'not found' || true)
  [ -z "$missing" ] || { echo "kfarm: linux-kbuild's modpost lacks libraries: $missing" >&2; exit 1; }
fi
rm -rf "$debs"
echo "unpacked ${deb##*/} at $mount"
