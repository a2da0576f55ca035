#!/bin/bash
# A warm builder's housekeeping, run by kfarm's agent. One builder serves several targets one after another
# (each with its own kernel, whose headers volumes it mounts), and every target must find it as a fresh
# container would be.
#   builder.sh setup <link> <target> …   once: the source tree (a tar on stdin) into /kfarm/pristine, the
#                                         <moddir>/<kver>/build and source links of every kernel mounted
#   builder.sh setup-with <n>             once per --with-module: its tree (a tar on stdin) into
#                                         /kfarm/pristine-with/<n>
#   builder.sh reset                      before each target: every process the targets before it left is
#                                         killed, the writable mounts emptied (but for the kernels' links and
#                                         the headers volumes under /usr/src), /kfarm/src and /kfarm/with/<n>
#                                         copied afresh
set -u
case $1 in
setup)
  shift
  mkdir -p /kfarm && : >/kfarm/links
  while [ $# -ge 2 ]; do
    echo "$1" >>/kfarm/links
    mkdir -p "$(dirname "$1")" && ln -sfn "$2" "$1" || exit 1
    shift 2
  done
  mkdir -p /kfarm/pristine && tar -x -C /kfarm/pristine || exit 1
  # What runs now (the init, the main process, the agent) is the builder; anything later belongs to a target.
  ls /proc | grep -E '^[0-9]+$' >/kfarm/keep
  ;;
setup-with)
  mkdir -p "/kfarm/pristine-with/$2" && tar -x -C "/kfarm/pristine-with/$2" || exit 1
  ;;
reset)
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = $$ ] || [ "$pid" = "$PPID" ] || grep -qx "$pid" /kfarm/keep || kill -KILL "$pid" 2>/dev/null
  done
  for d in /var/lib/dkms /tmp /root /var/tmp /run /kfarm/src /kfarm/with /kfarm/out; do
    [ -d "$d" ] && find "$d" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +
  done
  # /usr/src holds the headers volumes (mount points, on a device of their own): only what builds put there goes.
  usr_src=$(stat -c %d /usr/src)
  for e in /usr/src/* /usr/src/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    [ "$(stat -c %d "$e")" = "$usr_src" ] && rm -rf -- "$e"
  done
  # What a build or an installed --with-module left in a kernel's module directory, but for its links.
  while read -r link; do
    find "$(dirname "$link")" -mindepth 1 -maxdepth 1 ! -name build ! -name source -exec rm -rf -- {} +
  done </kfarm/links
  mkdir -p /kfarm/src && cp -a /kfarm/pristine/. /kfarm/src/
  if [ -d /kfarm/pristine-with ]; then
    mkdir -p /kfarm/with && cp -a /kfarm/pristine-with/. /kfarm/with/
  fi
  ;;
*)
  echo "builder.sh: unknown step $1" >&2
  exit 2
  ;;
esac
