#!/bin/bash
# A warm builder's housekeeping, run by kfarm's agent. One builder serves several targets one after another
# (each with its own kernel, whose headers volumes it mounts), and every target must find it as a fresh
# container would be.
#   builder.sh setup <link> <target> …   once: the source tree (a tar on stdin) into /kfarm/pristine, the
#                                         <moddir>/<kver>/build and source links of every kernel mounted
#   builder.sh reset                      before each target: every process the targets before it left is
#                                         killed, the writable mounts emptied, /kfarm/src copied afresh
set -u
case $1 in
setup)
  shift
  while [ $# -ge 2 ]; do
    mkdir -p "$(dirname "$1")" && ln -sfn "$2" "$1" || exit 1
    shift 2
  done
  mkdir -p /kfarm/pristine && tar -x -C /kfarm/pristine || exit 1
  # What runs now (the init, the main process, the agent) is the builder; anything later belongs to a target.
  ls /proc | grep -E '^[0-9]+$' >/kfarm/keep
  ;;
reset)
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = $$ ] || [ "$pid" = "$PPID" ] || grep -qx "$pid" /kfarm/keep || kill -KILL "$pid" 2>/dev/null
  done
  for d in /var/lib/dkms /tmp /root /var/tmp /run /kfarm/src /kfarm/out; do
    [ -d "$d" ] && find "$d" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +
  done
  mkdir -p /kfarm/src && cp -a /kfarm/pristine/. /kfarm/src/
  ;;
*)
  echo "builder.sh: unknown step $1" >&2
  exit 2
  ;;
esac
