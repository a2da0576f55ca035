#!/bin/bash
# Runs in a container of a kfarm base image, with network: adds a compiler a kernel's headers ask for that the
# release's default toolchain is not (rare: Debian builds a release's kernels with its default gcc).
# $1 = compiler package (gcc-N).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get -q update
apt-get install -y -q --no-install-recommends "$1"
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
