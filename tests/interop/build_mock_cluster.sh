#!/usr/bin/env bash
# Builds tests/interop/mock_cluster.c (librdkafka's mock cluster as a standalone program).
#
# usage: tests/interop/build_mock_cluster.sh [OUT_DIR]    (default: target/interop)
# Prints the path of the built binary. Needs gcc, pkg-config and librdkafka-dev.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out_dir="${1:-$root/target/interop}"
mkdir -p "$out_dir"

if ! pkg-config --exists rdkafka; then
    echo "build_mock_cluster: pkg-config cannot find rdkafka (apt-get install librdkafka-dev pkg-config)" >&2
    exit 1
fi

# shellcheck disable=SC2046 # pkg-config output is meant to be split into words
gcc -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -g -Wall -Wextra -Werror \
    -o "$out_dir/mock_cluster" "$here/mock_cluster.c" $(pkg-config --cflags --libs rdkafka)
echo "$out_dir/mock_cluster"
