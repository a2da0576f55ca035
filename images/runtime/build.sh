#!/bin/bash
# Builds one DKMS package for one kernel inside a kfarm builder container, the way `dkms build` does
# (prepare_build + actual_build of dkms 3.x). The plan kfarm derived from dkms.conf is in $KFARM_PLAN.
# Results go to /kfarm/out: make.log, module/<dest>.ko, Module.symvers. The last line this script prints
# on stdout is the reason of a failure; make's own output goes to make.log only.
set -u
eval "$KFARM_PLAN"

out=/kfarm/out
log=$out/make.log
source_dir=$source_tree/$module-$module_version
build_dir=$dkms_tree/$module/$module_version/build
mkdir -p "$out/module" "$(dirname "$build_dir")"
: > "$log"

fail() { echo "$1"; exit "${2:-1}"; }

# dkms add: the tree lands in /usr/src/<module>-<version>; dkms build copies it to the build dir.
rm -rf "$source_dir" "$build_dir"
mv /kfarm/src "$source_dir" || fail "cannot place the source tree at $source_dir"
cp -a "$source_dir/" "$build_dir" || fail "cannot copy the source tree to $build_dir"
cd "$build_dir" || fail "cannot enter $build_dir"
umask 022
unset CC CXX CFLAGS CXXFLAGS LDFLAGS CPPFLAGS ARCH CROSS_COMPILE

for p in "${patches[@]}"; do
  [ -e "patches/$p" ] || fail "patch $p named in dkms.conf is not in patches/" 5
  { echo "applying patch $p"; patch -p1 < "./patches/$p"; } >> "$log" 2>&1 || fail "applying patch $p failed (see make.log)" 6
done

run_script() { # $1 = pre_build|post_build, $2 = script path (+ args) relative to the build dir
  [ -n "$2" ] || return 0
  local run="$build_dir/$2"
  if [ -x "${run%% *}" ]; then
    echo "Running the $1 script: $2" >> "$log"
    ( cd "$build_dir" && exec $run ) >> "$log" 2>&1 || fail "the $1 script $2 exited $? (see make.log)" 8
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
[ "$status" -eq 0 ] || fail "make exited $status (bad return status for module build on kernel $kernelver ($arch))" 10

for i in "${!built_name[@]}"; do
  ko="${built_location[$i]}${built_name[$i]}.ko"
  [ -f "$ko" ] || fail "the build did not produce $ko (check BUILT_MODULE_NAME/BUILT_MODULE_LOCATION)" 7
done
for i in "${!built_name[@]}"; do
  ko="${built_location[$i]}${built_name[$i]}.ko"
  [ "${strip[$i]}" = yes ] && { strip -g "$ko" || fail "strip -g $ko failed"; }
  cp -f "$ko" "$out/module/${dest_name[$i]}.ko" || fail "cannot copy $ko"
done
[ -f Module.symvers ] && cp -f Module.symvers "$out/module/Module.symvers"

run_script post_build "$post_build"
exit 0
