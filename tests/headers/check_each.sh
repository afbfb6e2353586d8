#!/usr/bin/env bash
# Compiles every public header on its own, as C11 and as C++11, with pedantic
# warnings as errors and no feature-test macros, so each header is
# self-contained; and checks that none includes a header of libuv, hwloc or
# CUDA (DESIGN.md, "Public API").
#
#   check_each.sh INCLUDE_DIR C_COMPILER [CXX_COMPILER]
set -euo pipefail

inc=$1
cc=$2
cxx=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

failed=0
checked=0
for h in "$inc"/tide/*.h; do
    name=$(basename "$h")
    printf '#include <tide/%s>\nint td_header_check_%s;\n' "$name" "${name%.h}" > "$tmp/one.c"
    if ! $cc -std=c11 -Wpedantic -Wall -Wextra -Werror -fsyntax-only -I"$inc" "$tmp/one.c"; then
        echo "FAIL: tide/$name does not compile alone as C11"
        failed=$((failed + 1))
    fi
    checked=$((checked + 1))
    if [ -n "$cxx" ]; then
        cp "$tmp/one.c" "$tmp/one.cpp"
        if ! $cxx -std=c++11 -Wpedantic -Wall -Wextra -Werror -fsyntax-only -I"$inc" "$tmp/one.cpp"; then
            echo "FAIL: tide/$name does not compile alone as C++11"
            failed=$((failed + 1))
        fi
        checked=$((checked + 1))
    fi
    if grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](uv|uv/|hwloc|cuda|cublas|cuda_runtime)' "$h"; then
        echo "FAIL: tide/$name includes a dependency's header"
        failed=$((failed + 1))
    fi
done
echo "headers: $((checked - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
