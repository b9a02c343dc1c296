/**
 * `layer.usage()` for operators: Prometheus text exposition (`layer.metrics()`, `formatMetrics()`) and
 * OpenTelemetry observable instruments (`layer.observe()`), under one set of metric names.
 *
 * OpenTelemetry is an optional peer dependency: a caller that passes its own Meter needs nothing else, and only
 * the default meter loads `@opentelemetry/api`. The Meter is typed structurally here so the declarations compile
 * for consumers without that package.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { codedError, codes } from '../errors.js';
import type { Usage } from './ledger.js';

type Kind = 'counter' | 'gauge';

/** Every metric, in exposition order: [name, usage field, kind, unit, help]. */
export const METRICS: ReadonlyArray<readonly [name: string, field: keyof Usage, kind: Kind, unit: string, help: string]> = [
  ['sockguard_bytes_sent_total', 'bytesSent', 'counter', 'By', 'Bytes the kernel took from the sockets of the application.'],
  ['sockguard_bytes_received_total', 'bytesReceived', 'counter', 'By', 'Bytes delivered to the sockets of the application.'],
  ['sockguard_billed_bytes_total', 'billedBytes', 'counter', 'By', 'Billed bandwidth: bytes sent plus bytes received.'],
  ['sockguard_sockets_open', 'socketsOpen', 'gauge', '{socket}', 'Sockets open now.'],
  ['sockguard_sockets_created_total', 'socketsCreated', 'counter', '{socket}', 'Sockets created.'],
  ['sockguard_connects_total', 'connects', 'counter', '{connection}', 'Connections established.'],
  ['sockguard_denied_total', 'denied', 'counter', '{operation}', 'Operations refused by the egress policy.'],
  ['sockguard_reclaimed_total', 'reclaimed', 'counter', '{socket}', 'Sockets closed by idle reclaim.'],
  ['sockguard_send_calls_total', 'sendCalls', 'counter', '{call}', 'Send system calls.'],
  ['sockguard_receive_calls_total', 'receiveCalls', 'counter', '{call}', 'Receive system calls.'],
  ['sockguard_over_quota_total', 'overQuota', 'counter', '{operation}', 'Operations refused over quota.'],
];

function label(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/**
 * Prometheus text exposition (format 0.0.4) of one or more ledgers, one series per application (`app_id`). Give
 * several layers' usage in one call: a metric's HELP and TYPE may appear only once per scrape.
 */
export function formatMetrics(usages: readonly Usage[]): string {
  let out = '';
  for (const [name, field, kind, , help] of METRICS) {
    out += `# HELP ${name} ${help}\n# TYPE ${name} ${kind}\n`;
    for (const u of usages) out += `${name}{app_id="${label(u.appId)}"} ${u[field] as number}\n`;
  }
  return out;
}

/** The parts of an OpenTelemetry `Meter` this uses (`@opentelemetry/api` 1.x). */
export interface MeterLike {
  createObservableCounter(name: string, options?: { description?: string; unit?: string }): object;
  createObservableUpDownCounter(name: string, options?: { description?: string; unit?: string }): object;
  addBatchObservableCallback(
    callback: (result: { observe(observable: object, value: number, attributes?: Record<string, string>): void }) => void,
    observables: object[],
  ): void;
  removeBatchObservableCallback(
    callback: (result: { observe(observable: object, value: number, attributes?: Record<string, string>): void }) => void,
    observables: object[],
  ): void;
}

/**
 * Registers observable instruments that read `usage()` at each collection (nothing is recorded between
 * collections). OpenTelemetry names use dots and no `_total` suffix: `sockguard.bytes_sent`, ... with the
 * attribute `app_id`. Returns a function that unregisters them.
 */
export function observe(usage: () => Usage, meter: MeterLike | undefined): () => void {
  const m = meter ?? defaultMeter();
  const instruments = METRICS.map(([name, field, kind, unit, help]) => {
    const otelName = name.replace(/_total$/, '').replace(/^sockguard_/, 'sockguard.');
    const options = { description: help, unit };
    const instrument = kind === 'counter' ? m.createObservableCounter(otelName, options) : m.createObservableUpDownCounter(otelName, options);
    return [instrument, field] as const;
  });
  const observables = instruments.map(([i]) => i);
  const callback: Parameters<MeterLike['addBatchObservableCallback']>[0] = (result) => {
    const u = usage();
    const attributes = { app_id: u.appId };
    for (const [instrument, field] of instruments) result.observe(instrument, u[field] as number, attributes);
  };
  m.addBatchObservableCallback(callback, observables);
  return () => m.removeBatchObservableCallback(callback, observables);
}

function defaultMeter(): MeterLike {
  let api: { metrics: { getMeter(name: string, version?: string): MeterLike } };
  try {
    api = createRequire(import.meta.url)('@opentelemetry/api');
  } catch (err) {
    const e = codedError(
      Error,
      codes.OTEL_MISSING,
      'layer.observe() without a meter needs the @opentelemetry/api package (npm install @opentelemetry/api), or pass a Meter',
    );
    (e as Error & { cause?: unknown }).cause = err;
    throw e;
  }
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return api.metrics.getMeter('sockguard', pkg.version);
}
