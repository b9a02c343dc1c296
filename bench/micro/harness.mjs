// Shared runner for bench/micro/*.bench.mjs. Contract with the driver (run.mjs): the last line a
// micro-benchmark prints on stdout is JSON { results: [{ name, medianNs, meanNs, samples, note? }] },
// per single operation. Costs below ~1 µs are measured with an inner loop of `inner` operations
// per sample, since tinybench's own per-sample overhead is ~50 ns.
import { Bench } from 'tinybench';

export const env = {
  host: process.env.SG_BENCH_HOST ?? '127.0.0.1',
  port: Number(process.env.SG_BENCH_PORT ?? 0),
  timeMs: Number(process.env.SG_BENCH_TIME_MS ?? 1000),
  json: process.env.SG_BENCH_JSON === '1',
};

/**
 * @param {{ name: string, fn: () => unknown, inner?: number, note?: string }[]} tasks
 * @returns {Promise<{ name: string, medianNs: number, meanNs: number, samples: number, note?: string }[]>}
 */
export async function runTasks(tasks, { timeMs = env.timeMs } = {}) {
  const bench = new Bench({ time: timeMs, warmupTime: Math.min(200, timeMs / 4) });
  for (const t of tasks) bench.add(t.name, t.fn);
  await bench.run();
  return bench.tasks.map((task, i) => {
    const r = task.result;
    const inner = tasks[i].inner ?? 1;
    if (r.state !== 'completed') {
      return { name: task.name, error: String(r.error?.message ?? r.state) };
    }
    return {
      name: task.name,
      medianNs: (r.latency.p50 * 1e6) / inner,
      meanNs: (r.latency.mean * 1e6) / inner,
      samples: r.latency.samplesCount,
      ...(tasks[i].note ? { note: tasks[i].note } : {}),
    };
  });
}

/** Prints results as a table for people, then the JSON line for the driver. */
export function report(results) {
  if (!env.json) {
    console.table(results.map((r) => ({ name: r.name, 'median ns/op': r.medianNs?.toFixed(1), 'mean ns/op': r.meanNs?.toFixed(1), samples: r.samples, error: r.error })));
  }
  process.stdout.write(JSON.stringify({ results }) + '\n');
}

/** Yields one full event-loop turn, so natively coalesced writes are flushed (uv_check). */
export const turn = () => new Promise((resolve) => setImmediate(resolve));
