/**
 * Development-mode layers report what production would deny as process warnings (SOCKGUARD_WOULD_DENY). Tests
 * make such layers all the time, so Node's printer is wrapped to keep those warnings out of the output: they
 * are collected on `globalThis.sockguardWarnings` instead, and the tests about them listen for 'warning' as a
 * user would. Every other warning is still printed. Loaded in the test processes (vitest setupFiles) and, through
 * NODE_OPTIONS, in the Node processes tests start.
 */
const CODE = 'SOCKGUARD_WOULD_DENY';
const collected = (globalThis.sockguardWarnings ??= []);

for (const listener of process.listeners('warning')) {
  if (listener.sockguardQuiet) continue;
  process.removeListener('warning', listener);
  const quiet = (warning) => {
    if (warning?.code === CODE) collected.push(warning);
    else listener.call(process, warning);
  };
  quiet.sockguardQuiet = true;
  process.on('warning', quiet);
}
