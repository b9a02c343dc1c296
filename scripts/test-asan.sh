#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/ and runs the whole test
# suite against it (extra arguments go to vitest). A memory error or undefined behaviour aborts the process that
# hit it with a report, so the test that caused it fails: UBSan is made fatal (-fno-sanitize-recover), not just
# printed. Child processes and workers the tests start inherit the sanitized addon through SOCKGUARD_NATIVE.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf build-asan.tmp && mkdir build-asan.tmp
cp -r binding.gyp native build-asan.tmp/
ln -s "$PWD/node_modules" build-asan.tmp/node_modules
nodegyp="$(dirname "$(dirname "$(command -v npm)")")/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
nodedir="$(node -p "require('path').resolve(process.execPath, '../..')")"
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all"
(cd build-asan.tmp && CXXFLAGS="$sanitize -fno-omit-frame-pointer -g -O1" \
  LDFLAGS="$sanitize" node "$nodegyp" rebuild --nodedir="$nodedir" >/dev/null)
rm -rf build-asan && mv build-asan.tmp/build build-asan && rm -rf build-asan.tmp
npx tsc -p tsconfig.json
LD_PRELOAD="$(g++ -print-file-name=libasan.so)" \
  ASAN_OPTIONS="detect_leaks=0" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  SOCKGUARD_NATIVE="$PWD/build-asan/Release/sockguard.node" npx vitest run "$@"
