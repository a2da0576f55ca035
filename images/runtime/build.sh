#!/bin/bash
# Builds one DKMS package for one kernel inside a kfarm builder container, the way `dkms build` does
# (prepare_build + actual_build of dkms 3.x). The plan kfarm derived from dkms.conf is in $KFARM_PLAN.
# Results go to /kfarm/out: make.log, module/<dest>.ko, Module.symvers. The last line this script prints
# on stdout is the reason of a failure; make's own output goes to make.log only.
# The container's root file system is read-only: the source arrived in /kfarm/src (DKMS would have it in
# /usr/src/<module>-<version>), and only the in-memory mounts (the DKMS tree, /tmp, /kfarm) can be written.
set -u
eval "$KFARM_PLAN"

out=/kfarm/out
log=$out/make.log
build_dir=$dkms_tree/$module/$module_version/build
mkdir -p "$out/module" "$(dirname "$build_dir")"
: > "$log"

fail() { echo "$1"; exit 1; }

# DKMS refuses to build a module whose BUILD_DEPENDS modules are not installed for this kernel; a builder has
# no other DKMS module installed.
if [ "${#build_depends[@]}" -gt 0 ]; then
  fail "Aborting build of module $module/$module_version for kernel $kernelver ($arch) due to missing BUILD_DEPENDS: ${build_depends[*]} (kfarm does not build other DKMS modules first yet)"
fi

# dkms build copies the added source tree to the build dir.
rm -rf "$build_dir"
cp -a /kfarm/src/ "$build_dir" || fail "cannot copy the source tree to $build_dir"
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
  cp -f "$ko" "$out/module/${dest_name[$i]}.ko" || fail "cannot copy $ko"
done
[ -f Module.symvers ] && cp -f Module.symvers "$out/module/Module.symvers"

# DKMS runs post_build once the built modules are in $dkms_tree/<m>/<v>/<kver>/<arch>/module (zfs's post_build
# copies files there): the same layout is made here. What a post_build adds there is not collected.
base_dir=$dkms_tree/$module/$module_version/$kernelver/$arch
mkdir -p "$base_dir/log" && cp -a "$out/module" "$base_dir/" || fail "cannot make $base_dir"
run_script post_build "$post_build"
exit 0
