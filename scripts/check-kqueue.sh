#!/usr/bin/env bash
# The kqueue backend (native/poll_kqueue.cc) only builds on macOS and the BSDs. This compiles it for syntax and
# types on Linux against a minimal <sys/event.h> stand-in (test/fixtures/kqueue-shim), so a change to the poll
# interface that forgets it fails here rather than on the first BSD build. It poses as DragonFly BSD: the one
# name in the backend's platform list that glibc's and gcc's own headers do not react to.
set -euo pipefail
cd "$(dirname "$0")/.."
nodedir="$(node -p "require('path').resolve(process.execPath, '../..')")/include/node"
g++ -std=c++17 -fsyntax-only -Wall -Wextra -Wno-unused-parameter -D__DragonFly__=1 \
  -I test/fixtures/kqueue-shim -I "$nodedir" native/poll_kqueue.cc
echo "poll_kqueue.cc: syntax check passed"
