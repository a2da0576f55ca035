#!/bin/bash
# Runs inside a container of a kfarm base image (with network) to add one kernel's headers as a layer.
# $1 = linux-headers-<kver> package, $2 = suite it comes from, $3 = "backports" when the suite needs -t.
set -euo pipefail
pkg=$1 suite=$2
export DEBIAN_FRONTEND=noninteractive
apt-get -q update
target=()
[ "${3:-}" = backports ] && target=(-t "$suite")
apt-get install -y -q --no-install-recommends "${target[@]}" "$pkg"
kver=${pkg#linux-headers-}
test -f "/lib/modules/$kver/build/Makefile" || { echo "kfarm: $pkg installed no /lib/modules/$kver/build/Makefile" >&2; exit 1; }
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
