#!/bin/bash
# Runs in a container of a kfarm base image with NO network and empty engine volumes mounted under /kfarm/vol.
# Unpacks headers, -common and linux-kbuild .debs (read as a tar on stdin; kfarm downloaded them and checked them
# against the signed index), each into its own volume: the package's one directory (/usr/src/<dir> or
# /usr/lib/linux-kbuild-<v>) becomes the volume's root, and builders mount it read-only at that same path. No apt,
# no dpkg database, no maintainer scripts: DKMS needs the files only.
# $1 = the kernel's source architecture (x86, arm64, …) or "": other architectures' arch/ is left out.
# Then pairs: <.deb file name in the tar> <its volume's directory>.
# Prints what kfarm records about package N (0, 1, … in argument order) as `kfarm-fact N <key>=<value>` lines:
# mount (where it goes), and for a kernel's own headers package: kernel, moddir (/lib/modules or
# /usr/lib/modules, where it ships <kver>/build), build and source (those links' targets), sighash and sig
# (from its .config).
set -euo pipefail
srcarch=$1
shift
debs=$(mktemp -d)
tar -x -C "$debs"
# The -common package (Architecture: all) carries arch/<a>/ of every architecture the kernel supports, a third
# of its files; a build uses only arch/$SRCARCH (known names only: an architecture not listed here is kept).
others=()
if [ -n "$srcarch" ]; then
  for a in alpha arc arm arm64 csky hexagon ia64 loongarch m68k microblaze mips nios2 openrisc parisc powerpc \
    riscv s390 sh sparc um x86 xtensa; do
    [ "$a" = "$srcarch" ] || others+=("--exclude=./usr/src/linux-headers-*/arch/$a")
  done
fi

unpack() { # $1 = .deb, $2 = volume directory, $3 = its number
  local deb=$1 vol=$2 n=$3 stage=$2/.kfarm-stage
  mkdir "$stage"
  # Unpacked once, whole (the package's documentation and other architectures aside), then its directory is
  # moved up to the volume's root: a rename within the volume.
  dpkg-deb --fsys-tarfile "$deb" |
    tar -x -C "$stage" --no-same-owner --wildcards --exclude='./usr/share/doc/*' "${others[@]}"
  local payload
  payload=$(cd "$stage" && find usr/src usr/lib -mindepth 1 -maxdepth 1 -type d \
    \( -path 'usr/src/*' -o -name 'linux-kbuild-*' \) 2>/dev/null || true)
  if [ -z "$payload" ] || [ "$(wc -l <<<"$payload")" != 1 ]; then
    echo "kfarm: ${deb##*/} has not exactly one /usr/src/<dir> or /usr/lib/linux-kbuild-<v> directory: $(echo ${payload:-none})" >&2
    exit 1
  fi
  find "$stage/$payload" -mindepth 1 -maxdepth 1 -exec mv -t "$vol" {} +
  rmdir "$stage/$payload"
  echo "kfarm-fact $n mount=/$payload"
  # A kernel's own headers package ships <moddir>/<kver>/build: where that is (bookworm /lib/modules, trixie
  # /usr/lib/modules) is where packaging installs modules too.
  local link
  link=$(cd "$stage" && find lib/modules usr/lib/modules -mindepth 2 -maxdepth 2 -name build -type l 2>/dev/null | head -1 || true)
  if [ -n "$link" ]; then
    local kernel=${link%/build}
    kernel=${kernel##*/}
    local moddir=/${link%/*/build}
    echo "kfarm-fact $n kernel=$kernel"
    echo "kfarm-fact $n moddir=$moddir"
    echo "kfarm-fact $n build=$(readlink "$stage/$link")"
    if [ -L "$stage/${link%/build}/source" ]; then echo "kfarm-fact $n source=$(readlink "$stage/${link%/build}/source")"; fi
    if [ -r "$vol/.config" ]; then
      sed -n "s/^CONFIG_MODULE_SIG_HASH=\"\([A-Za-z0-9-]*\)\"$/kfarm-fact $n sighash=\1/p" "$vol/.config"
      if grep -q '^CONFIG_MODULE_SIG=y' "$vol/.config"; then echo "kfarm-fact $n sig=y"; fi
    fi
  fi
  local outside
  outside=$(cd "$stage" && find . ! -type d ! -path './lib/modules/*' ! -path './usr/lib/modules/*' | sort)
  [ -z "$outside" ] || echo "left out of ${deb##*/} (outside /$payload): $(echo $outside)"
  rm -rf "$stage"
  # linux-kbuild's host tools must run here: a library the base lacks would fail every build, so say it now.
  if [ -x "$vol/scripts/mod/modpost" ]; then
    local missing
    missing=$(ldd "$vol/scripts/mod/modpost" | grep 'not found' || true)
    [ -z "$missing" ] || { echo "kfarm: linux-kbuild's modpost lacks libraries: $missing" >&2; exit 1; }
  fi
  echo "unpacked ${deb##*/} at /$payload"
}

n=0
while [ $# -ge 2 ]; do
  unpack "$debs/$1" "$2" "$n"
  n=$((n + 1))
  shift 2
done
rm -rf "$debs"
