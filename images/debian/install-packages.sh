#!/bin/bash
# Runs in a container of a kfarm builder image, with network: adds distribution packages to it, committed as a
# layer of its own. Used for a compiler a kernel's headers ask for that the release's default toolchain is not
# (rare: Debian builds a release's kernels with its default gcc), and for a module's build dependencies
# (--build-deps). Builds themselves never have network.
# $@ = package names.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# The base knows main only; a module's dependencies may be in any component (NVIDIA's are in non-free). A
# component a suite lacks (non-free-firmware before bookworm) is skipped by apt with a warning.
sed -i -E 's/^(deb .*) main$/\1 main contrib non-free non-free-firmware/' /etc/apt/sources.list
apt-get -q update
apt-get install -y -q --no-install-recommends "$@"
echo "installed (virtual packages appear as their providers):"
dpkg-query -W -f '${binary:Package} ${Version}\n' "${@%%:*}" 2>/dev/null || true
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
