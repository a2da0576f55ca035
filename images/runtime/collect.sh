#!/bin/bash
# Writes a tar stream of /kfarm/out (a build's results) on stdout, for kfarm to read as untrusted input.
# A make.log over $1 bytes is cut first, in place, keeping its head and its tail with a line between them:
# the start and the end of a build are where its reasons are, and the host never streams gigabytes of log.
# The bytes cut are reported on stderr as `kfarm-cut <bytes>`.
set -u
limit=$1
log=/kfarm/out/make.log
if [ -f "$log" ] && [ ! -L "$log" ]; then
  size=$(stat -c %s "$log")
  if [ "$size" -gt "$limit" ]; then
    # The line between head and tail fits in 256 bytes: the cut log stays within the limit.
    half=$(((limit - 256) / 2))
    tail=/run/kfarm-make.log.tail
    # The tail goes aside first (/run is a small mount of its own): the log's own mount may be full.
    tail -c "$half" "$log" > "$tail" 2>/dev/null || : > "$tail"
    kept=$(stat -c %s "$tail")
    truncate -s "$half" "$log"
    cut=$((size - half - kept))
    printf '\n[kfarm: make.log was %s bytes; %s bytes cut here, its head and tail kept]\n' "$size" "$cut" >> "$log"
    cat "$tail" >> "$log"
    rm -f "$tail"
    echo "kfarm-cut $cut" >&2
  fi
fi
exec /bin/tar -c -C /kfarm out
