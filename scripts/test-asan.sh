#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/ and runs the socket test
# suites against it. Any memory error aborts the process with a report.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf build-asan.tmp && mkdir build-asan.tmp
cp -r binding.gyp native build-asan.tmp/
ln -s "$PWD/node_modules" build-asan.tmp/node_modules
nodegyp="$(dirname "$(dirname "$(command -v npm)")")/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
nodedir="$(node -p "require('path').resolve(process.execPath, '../..')")"
(cd build-asan.tmp && CXXFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -g -O1" \
  LDFLAGS="-fsanitize=address,undefined" node "$nodegyp" rebuild --nodedir="$nodedir" >/dev/null)
rm -rf build-asan && mv build-asan.tmp/build build-asan && rm -rf build-asan.tmp
npx tsc -p tsconfig.json
LD_PRELOAD="$(g++ -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0 \
  SOCKGUARD_NATIVE="$PWD/build-asan/Release/sockguard.node" npx vitest run test/core test/service "$@"
