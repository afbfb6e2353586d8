#!/usr/bin/env bash
# Installs every Debian package that tide's build, tests and benchmarks need.
#
# Debian 12 (bookworm), run as root (or as a user with password-less sudo).
# Idempotent: when every package is already installed it does nothing, not
# even `apt-get update`, so running it before each build costs a second.
#
#   bash scripts/setup.sh
set -euo pipefail

packages=(
    # toolchain and build system
    build-essential gcc g++ meson ninja-build pkg-config python3 git
    # sanitizer runtimes of gcc 12 (address, undefined, thread, leak)
    libasan8 libubsan1 libtsan2 liblsan0
    # setarch (ThreadSanitizer on kernels with high ASLR entropy)
    util-linux
    # the library's dependencies
    libuv1-dev libhwloc-dev libopenblas-dev zlib1g-dev
    # the library's JSON parser (checkpoint headers)
    libcjson-dev
    # tests and tools; clang and its runtimes for the fuzz job (libFuzzer is
    # in libclang-rt-14-dev, which clang only recommends)
    libcriterion-dev clang libclang-rt-14-dev
    # benchmarks: StarPU, numpy and torch as peers; numpy also for the file
    # tests (our .npy files in numpy, numpy's in tide)
    libstarpu-dev python3-numpy python3-torch libtorch-dev g++
)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup: all ${#packages[@]} packages already installed"
    exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        as_root=(sudo -n)
    else
        echo "setup: not root and no sudo; run as root to install: ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)

echo "setup: installing ${missing[*]}"

# The package lists are fetched once; a second try covers a transient
# network failure.
tries=0
until "${as_root[@]}" apt-get "${apt_opts[@]}" update; do
    tries=$((tries + 1))
    if [ "$tries" -ge 3 ]; then
        echo "setup: apt-get update failed $tries times" >&2
        exit 1
    fi
    sleep 5
done

"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y \
    --no-install-recommends "${missing[@]}"

echo "setup: done"
