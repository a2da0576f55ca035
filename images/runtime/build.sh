#!/bin/bash
# Builds one DKMS package for one kernel inside a kfarm builder container, the way `dkms build` does
# (prepare_build + actual_build of dkms 3.x). The plan kfarm derived from dkms.conf is in $KFARM_PLAN, the
# package's source in $KFARM_SOURCE (default /kfarm/src).
# KFARM_ROLE=module (the default): the module kfarm builds; results go to /kfarm/out: make.log,
# module/<dest>.ko, Module.symvers. KFARM_ROLE=dependency: a --with-module package, built and then installed
# for this kernel as `dkms install` leaves it (its modules in /lib/modules/<kver>/updates/dkms, depmod run, its
# tree and Module.symvers in the DKMS tree, its source in /usr/src), so that what needs it finds it; its
# make.log goes first in /kfarm/out/make.log. The last line this script prints on stdout is the reason of a
# failure; make's own output goes to make.log only.
# The container's root file system is read-only: only the in-memory mounts (the DKMS tree, /usr/src, /tmp,
# /kfarm, the kernels' module directories) can be written.
set -u
eval "$KFARM_PLAN"
source_dir=${KFARM_SOURCE:-/kfarm/src}
role=${KFARM_ROLE:-module}

out=/kfarm/out
log=$out/make.log
build_dir=$dkms_tree/$module/$module_version/build
base_dir=$dkms_tree/$module/$module_version/$kernelver/$arch
modout=$out/module
[ "$role" = dependency ] && modout=$base_dir/module
mkdir -p "$out" "$modout" "$(dirname "$build_dir")"
touch "$log"
[ "$role" = dependency ] && echo "kfarm: --with-module $module/$module_version, built and installed before the module" >> "$log"

fail() { echo "$1"; exit 1; }

# DKMS refuses to build a module whose BUILD_DEPENDS modules are not installed for this kernel.
missing=
for bd in "${build_depends[@]}"; do
  [ -L "$dkms_tree/$bd/kernel-$kernelver-$arch" ] || missing="$missing $bd"
done
[ -z "$missing" ] || fail "Aborting build of module $module/$module_version for kernel $kernelver ($arch) due to missing BUILD_DEPENDS:$missing (give its DKMS source with --with-module)"

# dkms add puts the source in /usr/src/<module>-<version> (some Makefiles look for other modules there); dkms
# build copies it to the build dir.
src_tree=$source_dir
if [ "$source_dir" != "/usr/src/$module-$module_version" ]; then
  src_tree=/usr/src/$module-$module_version
  [ -e "$src_tree" ] && fail "$module/$module_version is given twice (the module and a --with-module, or two --with-module)"
  cp -a "$source_dir/" "$src_tree" || fail "cannot copy the source tree to $src_tree"
fi
ln -sfn "$src_tree" "$dkms_tree/$module/$module_version/source"
# dkms build copies the added source tree to the build dir.
rm -rf "$build_dir"
cp -a "$src_tree/" "$build_dir" || fail "cannot copy the source tree to $build_dir"
cd "$build_dir" || fail "cannot enter $build_dir"
umask 022
unset CC CXX CFLAGS CXXFLAGS LDFLAGS CPPFLAGS ARCH CROSS_COMPILE

for p in "${patches[@]}"; do
  [ -e "patches/$p" ] || fail "patch $p named in dkms.conf is not in patches/"
  { echo "applying patch $p"; patch -p1 < "./patches/$p"; } >> "$log" 2>&1 || fail "applying patch $p failed (see make.log)"
done

run_script() { # $1 = pre_build|post_build, $2 = script path (+ args) relative to the build dir
  [ -n "$2" ] || return 0
  local run="$build_dir/$2"
  if [ -x "${run%% *}" ]; then
    echo "Running the $1 script: $2" >> "$log"
    ( cd "$build_dir" && exec $run ) >> "$log" 2>&1 || fail "the $1 script $2 exited $? (see make.log)"
  else
    echo "Warning: the $1 script $2 is not executable; not run" >> "$log"
  fi
}
run_script pre_build "$pre_build"

{
  echo "DKMS make.log for $module-$module_version for kernel $kernelver ($arch)"
  date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}"
  echo "$build_command"
} >> "$log"
eval "{ $build_command; } >> \"\$log\" 2>&1"
status=$?
[ "$status" -eq 0 ] || fail "make exited $status (bad return status for module build on kernel $kernelver ($arch))"

for i in "${!built_name[@]}"; do
  ko="${built_location[$i]}${built_name[$i]}.ko"
  [ -f "$ko" ] || fail "the build did not produce $ko (check BUILT_MODULE_NAME/BUILT_MODULE_LOCATION)"
done
for i in "${!built_name[@]}"; do
  ko="${built_location[$i]}${built_name[$i]}.ko"
  [ "${strip[$i]}" = yes ] && { strip -g "$ko" || fail "strip -g $ko failed"; }
  cp -f "$ko" "$modout/${dest_name[$i]}.ko" || fail "cannot copy $ko"
done
[ -f Module.symvers ] && cp -f Module.symvers "$modout/Module.symvers"

# DKMS runs post_build once the built modules are in $dkms_tree/<m>/<v>/<kver>/<arch>/module (zfs's post_build
# copies files there): the same layout is made here. What a post_build adds there is not collected.
mkdir -p "$base_dir/log"
[ "$role" = dependency ] || cp -a "$out/module" "$base_dir/" || fail "cannot make $base_dir"
run_script post_build "$post_build"
[ "$role" = dependency ] || exit 0

# dkms install: the modules where Debian's dkms puts them, depmod, and the kernel's link that says "installed".
install_dir=/lib/modules/$kernelver/updates/dkms
mkdir -p "$install_dir" || fail "cannot make $install_dir"
for i in "${!built_name[@]}"; do
  cp -f "$modout/${dest_name[$i]}.ko" "$install_dir/" || fail "cannot install ${dest_name[$i]}.ko"
done
depmod -a "$kernelver" >> "$log" 2>&1 || echo "Warning: depmod -a $kernelver exited $?" >> "$log"
ln -sfn "$module_version/$kernelver/$arch" "$dkms_tree/$module/kernel-$kernelver-$arch" || fail "cannot mark $module installed"
echo "$module/$module_version installed for $kernelver ($arch)" >> "$log"
exit 0
