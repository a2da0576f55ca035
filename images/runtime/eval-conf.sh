#!/bin/bash
# Sources a dkms.conf the way DKMS does and prints what DKMS would keep, as NUL-separated records on stdout:
#   V <name> <index> <value>   one element of a dkms.conf variable (plain variables are index 0)
#   M <index>                  MAKE_MATCH[index] matches $kernelver (bash ERE, as DKMS tests it)
#   P <index>                  PATCH[index] applies to $kernelver
#   X <reason>                 a BUILD_EXCLUSIVE_* directive excludes this kernel/arch/config
#   C clang|lld                the kernel was built with clang / linked with lld
# Usage: eval-conf.sh <dkms.conf>; the caller sets kernelver, arch, kernel_source_dir, kernel_config,
# dkms_tree, source_tree, install_tree, parallel_jobs, running_distribution (and module/module_version, or
# neither: see below), and runs it with cwd = the module's source tree (DKMS keeps the caller's cwd;
# `$(cat VERSION)` relies on it).
conf=$1
# The --dkms-conf-override text, as a file; dkms.conf does not see the variable it came in.
override=
if [ -n "${KFARM_CONF_OVERRIDE+set}" ]; then
  override=$(mktemp)
  printf '%s\n' "$KFARM_CONF_OVERRIDE" | sed 's/\r$//' > "$override"
fi
unset KFARM_CONF_OVERRIDE
if [ -z "${kernel_config:-}" ]; then
  kernel_config=$kernel_source_dir/.config
  [ -e "$kernel_source_dir/include/config/auto.conf" ] && kernel_config=$kernel_source_dir/include/config/auto.conf
fi
if [ -z "${running_distribution:-}" ] && [ -r /etc/os-release ]; then
  running_distribution=$(. /etc/os-release && echo "$ID${VERSION_ID:-}")
fi
vars="CLEAN PACKAGE_NAME PACKAGE_VERSION POST_ADD POST_BUILD POST_INSTALL POST_REMOVE PRE_BUILD PRE_INSTALL
 BUILD_DEPENDS BUILD_EXCLUSIVE_KERNEL BUILD_EXCLUSIVE_KERNEL_MIN BUILD_EXCLUSIVE_KERNEL_MAX BUILD_EXCLUSIVE_ARCH
 BUILD_EXCLUSIVE_CONFIG OBSOLETE_BY MAKE MAKE_MATCH PATCH PATCH_MATCH BUILT_MODULE_NAME BUILT_MODULE_LOCATION
 DEST_MODULE_NAME DEST_MODULE_LOCATION STRIP AUTOINSTALL NO_WEAK_MODULES REMAKE_INITRD MODULES_CONF"

# DKMS strips trailing CRs, so CRLF files work; it sources a cleaned copy the same way.
clean=$(mktemp)
sed 's/\r$//' "$conf" > "$clean"
if ! syntax=$(bash -n "$clean" 2>&1); then
  # bash names the temp file; the caller names the real one.
  printf '%s\n' "$syntax" | sed "s|^$clean: ||" | head -n 1 >&2
  exit 65
fi

# DKMS's safe_source (dkms 3.0.10 and 3.2.2 alike): source dkms.conf in a subshell, print every kept element
# as NAME[i]="value" with the value expanded unquoted (word-split on IFS and re-joined with single spaces, globs
# matched), then source that output again. So a multi-line PRE_BUILD becomes one line, runs of blanks collapse,
# and `$`, backquotes and backslashes in a value are expanded a second time, in a shell that no longer has what
# dkms.conf defined. kfarm reads values exactly so; the tests compare it with the real dkms code.
# $1 = the file to source (default: dkms.conf), $2 = a reading it starts from (as read_conf's next safe_source
# sees what the previous one set).
reread=$(mktemp)
dkms_read() {
  (
    exec > "$reread"
    for v in $vars; do unset "$v"; done
    [ -n "${2:-}" ] && . "$2" > /dev/null 2>&1
    . "${1:-$clean}" > /dev/null
    for _export_env in $vars; do
      for _i in $(eval echo \${!$_export_env[@]}); do
        eval echo '$_export_env[$_i]=\"${'$_export_env'[$_i]}\"'
      done
    done
    for directive in $(set | grep ^DKMS_DIRECTIVE | cut -d = -f 2-3); do
      directive_name=${directive%%=*}
      directive_value=${directive#*=}
      echo "$directive_name=\"$directive_value\""
    done
  )
}

# DKMS's VER(): pad every number to three digits so versions compare as strings.
VER() {
  echo "$1" | sed -e 's:\([^0-9]\)\([0-9]\):\1 \2:g' -e 's:\([0-9]\)\([^0-9]\):\1 \2:g' -e 's:\(.*\): \1 :' \
    -e 's: \([0-9]\) : 00\1 :g' -e 's: \([0-9][0-9]\) : 0\1 :g' -e 's: ::g'
}

# Like `dkms add` then `dkms build`: when the caller does not name the module, a first reading learns
# PACKAGE_NAME/PACKAGE_VERSION, and the reading that counts sees them as $module/$module_version.
if [ -z "${module+set}" ]; then
  dkms_read 2>/dev/null
  { IFS= read -r -d '' module; IFS= read -r -d '' module_version; } < <(
    for v in $vars; do unset "$v"; done
    . "$reread" > /dev/null 2>&1
    printf '%s\0%s\0' "${PACKAGE_NAME:-}" "${PACKAGE_VERSION:-}"
  )
  # A package's /usr/src/<module>-<version> tree is built as `-m <module> -v <version>`: that is $module_version.
  package_dir=${KFARM_PACKAGE_DIR:-}
  [[ -n $module && $package_dir == "$module"-?* ]] && module_version=${package_dir#"$module"-}
fi

dkms_read
# --dkms-conf-override: read after dkms.conf like DKMS reads /etc/dkms/<module>.conf, by safe_source too, in a
# shell that has dkms.conf's reading (so it may change any value); the readings are then sourced in that order.
first=$(mktemp)
cp "$reread" "$first"
second=
if [ -n "$override" ]; then
  dkms_read "$override" "$first"
  second=$reread
fi
(
  for v in $vars; do unset "$v"; done
  # DKMS's own diagnostics from these readings go where dkms would print them, never into the records.
  . "$first" >&2
  [ -z "$second" ] || . "$second" >&2
  for v in $vars; do
    eval "idx=(\"\${!$v[@]}\")"
    for i in "${idx[@]}"; do
      eval "val=\${$v[$i]}"
      printf 'V\0%s\0%s\0%s\0' "$v" "$i" "$val"
    done
  done
  for i in "${!MAKE[@]}"; do
    [[ ${MAKE[$i]} && ${MAKE_MATCH[$i]:-} && $kernelver =~ ${MAKE_MATCH[$i]} ]] && printf 'M\0%s\0' "$i"
  done
  for i in "${!PATCH[@]}"; do
    [[ ${PATCH[$i]} && ( ! ${PATCH_MATCH[$i]:-} || $kernelver =~ ${PATCH_MATCH[$i]} ) ]] && printf 'P\0%s\0' "$i"
  done
  [[ ${BUILD_EXCLUSIVE_KERNEL:-} && ! $kernelver =~ $BUILD_EXCLUSIVE_KERNEL ]] &&
    printf 'X\0%s\0' "BUILD_EXCLUSIVE_KERNEL=\"$BUILD_EXCLUSIVE_KERNEL\" does not match $kernelver"
  [[ ${BUILD_EXCLUSIVE_KERNEL_MIN:-} && "$(VER "$kernelver")" < "$(VER "$BUILD_EXCLUSIVE_KERNEL_MIN")" ]] &&
    printf 'X\0%s\0' "$kernelver is older than BUILD_EXCLUSIVE_KERNEL_MIN=\"$BUILD_EXCLUSIVE_KERNEL_MIN\""
  [[ ${BUILD_EXCLUSIVE_KERNEL_MAX:-} && "$(VER "$kernelver")" > "$(VER "$BUILD_EXCLUSIVE_KERNEL_MAX")" ]] &&
    printf 'X\0%s\0' "$kernelver is newer than BUILD_EXCLUSIVE_KERNEL_MAX=\"$BUILD_EXCLUSIVE_KERNEL_MAX\""
  [[ ${BUILD_EXCLUSIVE_ARCH:-} && ! $arch =~ $BUILD_EXCLUSIVE_ARCH ]] &&
    printf 'X\0%s\0' "BUILD_EXCLUSIVE_ARCH=\"$BUILD_EXCLUSIVE_ARCH\" does not match $arch"
  if [[ ${BUILD_EXCLUSIVE_CONFIG:-} && -e $kernel_source_dir/.config ]]; then
    for kconf in $BUILD_EXCLUSIVE_CONFIG; do
      case "$kconf" in
        !*) grep -q -E "^${kconf#!}=[ym]" "$kernel_source_dir/.config" &&
              printf 'X\0%s\0' "BUILD_EXCLUSIVE_CONFIG: the kernel has ${kconf#!} set" ;;
        *) grep -q -E "^${kconf}=[ym]" "$kernel_source_dir/.config" ||
              printf 'X\0%s\0' "BUILD_EXCLUSIVE_CONFIG: the kernel lacks $kconf" ;;
      esac
    done
  fi
  if [[ -e ${kernel_config:-} ]]; then
    grep -q '^CONFIG_CC_IS_CLANG=y' "$kernel_config" && printf 'C\0clang\0'
    grep -q '^CONFIG_LD_IS_LLD=y' "$kernel_config" && printf 'C\0lld\0'
  fi
  exit 0
)
status=$?
rm -f "$clean" "$reread" "$first" ${override:+"$override"}
exit $status
