#!/bin/bash
# The real dkms's reading of a dkms.conf, for comparison with kfarm's: dkms's own mktemp_or_die and safe_source,
# cut out of the packaged script, called as read_conf calls them: first without $module (dkms add learns it
# from PACKAGE_NAME/PACKAGE_VERSION), then with what that reading found. Prints the same NUL-separated
# `V name index value` records as kfarm's eval-conf.sh for the variables named in $3.
# Usage: real-dkms-reading.sh <path of dkms> <dkms.conf> "<variables>"   (cwd and kernel variables as for kfarm)
dkms=$1 conf=$2 vars=$3
eval "$(sed -n -e '/^mktemp_or_die() {/,/^}/p' -e '/^safe_source() {/,/^}/p' "$dkms")"
die() { echo "$*" >&2; exit 1; }
show_deprecation_warnings=0
all=$(sed -n '/^readonly dkms_conf_variables="/,/"/p' "$dkms" | sed -e 's/.*="//' -e 's/"//')
read_once() {
  for v in $all; do unset "$v"; done
  safe_source "$conf" $all
}
{ IFS= read -r -d '' module; IFS= read -r -d '' module_version; } < <(
  read_once > /dev/null 2>&1
  printf '%s\0%s\0' "${PACKAGE_NAME:-}" "${PACKAGE_VERSION:-}"
)
read_once > /dev/null 2>&1
for v in $vars; do
  eval "idx=(\"\${!$v[@]}\")"
  for i in "${idx[@]}"; do
    eval "val=\${$v[$i]}"
    printf 'V\0%s\0%s\0%s\0' "$v" "$i" "$val"
  done
done
