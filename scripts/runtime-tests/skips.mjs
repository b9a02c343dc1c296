/**
 * Tests that cannot apply under Bun or Deno, with the reason the runner prints for each. `test` is a substring
 * of the full test name ("describe > test"); `file` the test file it belongs to.
 */
const SKIPS = {
  bun: [
    {
      file: 'test/core/native-boundary.test.ts',
      test: 'TLS exports > wrong types throw coded errors',
      reason: "the core's TLS uses the OpenSSL the host process exports (Node's); Bun does not export one, so tls_context() answers 'not available' before it parses a CA (TLS there runs through tls.connect over the socket)",
    },
    {
      file: 'test/core/native-boundary.test.ts',
      test: 'out of descriptors: a coded EMFILE',
      reason: "Bun reports a dlopen that ran out of descriptors as MODULE_NOT_FOUND ('Cannot find module'), which cannot be told from a missing build",
    },
    {
      file: 'test/core/net-compat.test.ts',
      test: 'timeout: undefined until set',
      reason: "the test holds sockguard to Node's net, whose timeout is undefined until set; Bun's own net.Socket reports 0",
    },
    {
      file: 'test/policy/file.test.ts',
      test: 'policy objects report the JSON path without a position',
      reason: 'JavaScriptCore gives every Error object its own `line` property, so the absence of one cannot be checked',
    },
  ],
  deno: [
    {
      file: 'test/core/native-boundary.test.ts',
      test: 'TLS exports > wrong types throw coded errors',
      reason: "the core's TLS uses the OpenSSL the host process exports (Node's); Deno does not export one, so tls_context() answers 'not available' before it parses a CA (TLS there runs through tls.connect over the socket)",
    },
    {
      file: 'test/core/ecosystem.test.ts',
      test: 'tls.connect({ socket }) handshakes and moves data both ways',
      reason:
        "the test waits for 'close' after end(); Deno 2.9's tls.connect({ socket }) echoes every byte back but never emits 'end' or 'close' after end(), over Deno's own net.Socket just the same",
    },
  ],
};

/** The skips of `file` under `runtime`, as [{ test, reason }]. */
export function skipsFor(runtime, file) {
  return (SKIPS[runtime] ?? []).filter((s) => s.file === file).map(({ test, reason }) => ({ test, reason }));
}
