#!/bin/bash
# Runs in a container of a kfarm base image with NO network. Unpacks one kernel's headers, -common and
# linux-kbuild .debs, which kfarm downloaded itself and checked against the signed index, read as a tar on
# stdin. No apt, no dpkg database, no maintainer scripts: DKMS needs the files only.
# $1 = kernel release, $2 = the compiler the headers ask for (gcc-N) or "", $3 = the kernel's source
# architecture (x86, arm64, …) or "".
# Exit 3: that compiler is not in this image (kfarm then adds it in a layer of its own and tries again).
set -euo pipefail
kver=$1 compiler=${2:-} srcarch=${3:-}
if [ -n "$compiler" ] && ! command -v "$compiler" >/dev/null; then
  echo "kfarm: the headers of $kver want $compiler, which this image lacks" >&2
  exit 3
fi
# The -common package (Architecture: all) carries arch/<a>/ of every architecture the kernel supports, a third
# of its files; a build uses only arch/$SRCARCH, so the others are left out of the layer (known names only:
# an architecture not listed here is kept).
others=()
if [ -n "$srcarch" ]; then
  for a in alpha arc arm arm64 csky hexagon ia64 loongarch m68k microblaze mips nios2 openrisc parisc powerpc \
    riscv s390 sh sparc um x86 xtensa; do
    [ "$a" = "$srcarch" ] || others+=("--exclude=./usr/src/linux-headers-*/arch/$a")
  done
fi
debs=$(mktemp -d)
tar -x -C "$debs"
for deb in "$debs"/*.deb; do
  echo "unpacking ${deb##*/}"
  # --keep-directory-symlink: the root is merged-/usr, and /lib must stay a symlink (dpkg-deb -x replaces it).
  # Their documentation is not something a build reads.
  dpkg-deb --fsys-tarfile "$deb" |
    tar -x -C / --keep-directory-symlink --wildcards --exclude='./usr/share/doc/*' "${others[@]}"
done
build=/lib/modules/$kver/build
test -f "$build/Makefile" || { echo "kfarm: the headers installed no $build/Makefile" >&2; exit 1; }
# Where this release's headers package ships <moddir>/<kver>/build (bookworm /lib/modules, trixie
# /usr/lib/modules), as dpkg would have recorded it: packaging installs modules in the same directory.
mkdir -p /var/lib/kfarm/moddir
# Listed first, not piped into grep -q: with pipefail, grep's early exit would fail dpkg-deb with SIGPIPE.
listing=$(dpkg-deb -c "$debs"/*_linux-headers-"$kver"_*.deb)
for d in /usr/lib/modules /lib/modules; do
  if grep -qF " .$d/$kver/build -> " <<<"$listing"; then
    echo "$d" >"/var/lib/kfarm/moddir/$kver"
    break
  fi
done
rm -rf "$debs"
# linux-kbuild's host tools must run here: a library the base lacks would fail every build, so say it now.
missing=$(ldd "$build/scripts/mod/modpost" | grep 'not found' || true)
[ -z "$missing" ] || { echo "kfarm: linux-kbuild's modpost lacks libraries: $missing" >&2; exit 1; }
echo "installed $kver"
