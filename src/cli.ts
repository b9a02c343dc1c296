#!/usr/bin/env node
/**
 * `sockguard check HOST:PORT [--policy FILE] [--json]`: the policy verdict for a destination, for operators.
 * Names are resolved once with the system resolver, exactly as a connection would resolve them; nothing is
 * connected to.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadPolicy, systemResolver, verdictOf, vetWithProduction, type Policy, type ProductionVerdict, type Resolver, type Vetted } from './policy/index.js';

export interface CliIO {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Resolver for names. @default systemResolver */
  resolver?: Resolver;
  /** Environment (for SOCKGUARD_POLICY). @default process.env */
  env?: Record<string, string | undefined>;
}

export const EXIT_ALLOWED = 0;
export const EXIT_DENIED = 1;
export const EXIT_INVALID = 2;

export const USAGE = `Usage: sockguard check HOST:PORT [--policy FILE] [--json]
       sockguard --version
       sockguard broker [--linger MS]

Evaluates a destination against sockguard's egress policy without connecting to it.

  HOST:PORT        host name or IP literal and port; IPv6 literals in brackets: [2001:db8::1]:443
  --policy FILE    JSON policy file (schema version 1), or "production" / "development"
                   (default: $SOCKGUARD_POLICY, else production)
  --json           print the verdict as JSON
  -h, --help       show this help
  --version        print sockguard's version

broker           holds parked connections (socket.detach({ broker: true })) for the processes of this
                 user, on the Unix socket $SOCKGUARD_BROKER (default sockguard-<uid>.sock in
                 $XDG_RUNTIME_DIR or the temporary directory); runs until killed, or with --linger
                 until nothing has been parked for MS milliseconds. Started on first need otherwise.

Exit status of check: 0 allowed, 1 denied, 2 no verdict (usage error, invalid host, port or policy file, or the
name could not be resolved).
`;

class UsageError extends Error {
  code = 'ERR_USAGE';
}

interface Args {
  destination: string;
  policy: string | undefined;
  json: boolean;
}

function parseArgs(argv: readonly string[]): Args | 'help' | 'version' {
  if (argv.length === 0) throw new UsageError('missing command');
  if (argv.includes('--help') || argv.includes('-h') || argv[0] === 'help') return 'help';
  if (argv[0] === '--version' || argv[0] === 'version') return 'version';
  if (argv[0] !== 'check') throw new UsageError(`unknown command ${JSON.stringify(argv[0])}`);
  let destination: string | undefined;
  let policy: string | undefined;
  let json = false;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') json = true;
    else if (a === '--policy') {
      policy = argv[++i];
      if (policy === undefined) throw new UsageError('--policy needs a value');
    } else if (a.startsWith('--policy=')) policy = a.slice('--policy='.length);
    else if (a.startsWith('-') && a.length > 1) throw new UsageError(`unknown option ${a}`);
    else if (destination === undefined) destination = a;
    else throw new UsageError(`unexpected argument ${JSON.stringify(a)}`);
  }
  if (destination === undefined) throw new UsageError('missing HOST:PORT');
  return { destination, policy, json };
}

/** Splits `host:port` / `[v6]:port`. The host keeps its brackets; the policy accepts one pair. */
export function splitHostPort(s: string): { host: string; port: string } {
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) throw new UsageError(`${JSON.stringify(s)}: missing "]" after the IPv6 literal`);
    const rest = s.slice(close + 1);
    if (!rest.startsWith(':') || rest.length === 1) throw new UsageError(`${JSON.stringify(s)}: expected [IPV6]:PORT`);
    return { host: s.slice(0, close + 1), port: rest.slice(1) };
  }
  const colon = s.lastIndexOf(':');
  if (colon < 0 || colon === s.length - 1) throw new UsageError(`${JSON.stringify(s)}: expected HOST:PORT`);
  const host = s.slice(0, colon);
  if (host.includes(':')) throw new UsageError(`${JSON.stringify(s)}: put IPv6 literals in brackets, e.g. [::1]:80`);
  return { host, port: s.slice(colon + 1) };
}

function bracket(address: string, family: number): string {
  return family === 6 ? `[${address}]` : address;
}

function render(v: Vetted, port: number, production: ProductionVerdict | undefined): string {
  const verdict = verdictOf(v, port);
  const t = v.target;
  const shown = t.kind === 'name' ? t.name : bracket(t.address, t.family);
  const lines: string[] = [];
  if (verdict.allowed) lines.push(`allowed ${shown}:${port} -> ${bracket(verdict.address, verdict.family)}:${port}`);
  else lines.push(`denied ${shown}:${port} (rule: ${verdict.rule})`);
  if (v.nameDenied !== undefined) lines.push(`  ${shown}  denied  ${v.nameDenied.rule}: ${v.nameDenied.reason} (not resolved)`);
  for (const a of v.allowed) lines.push(`  ${a.address}  allowed`);
  for (const d of v.denied) lines.push(`  ${d.address}  denied  ${d.rule}: ${d.reason}`);
  if (production !== undefined) {
    lines.push(production.allowed ? 'production: allowed' : `production: denied (rule: ${production.rule}): ${production.reason}`);
  }
  return `${lines.join('\n')}\n`;
}

function toJson(v: Vetted, port: number, production: ProductionVerdict | undefined): string {
  const verdict = verdictOf(v, port);
  const t = v.target;
  const doc = {
    ...verdict,
    host: t.host,
    target: t.kind === 'name' ? { kind: t.kind, name: t.name } : { kind: t.kind, address: t.address, family: t.family },
    addresses: [
      ...v.allowed.map((a) => ({ address: a.address, family: a.family, allowed: true })),
      ...v.denied.map((d) => ({ address: d.address, family: d.family, allowed: false, rule: d.rule, reason: d.reason })),
    ],
    ...(v.nameDenied !== undefined ? { nameDenied: v.nameDenied } : {}),
    ...(production !== undefined ? { production } : {}),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/**
 * Runs the CLI with `argv` (without node and script) and returns the exit status; never exits the process.
 */
export async function main(argv: readonly string[], io: CliIO = defaultIO()): Promise<number> {
  if (argv[0] === 'broker' && !argv.includes('--help') && !argv.includes('-h')) return broker(argv.slice(1), io);
  let args: Args | 'help' | 'version';
  try {
    args = parseArgs(argv);
  } catch (err) {
    io.stderr(`sockguard: ${(err as Error).message}\n\n${USAGE}`);
    return EXIT_INVALID;
  }
  if (args === 'help') {
    io.stdout(USAGE);
    return EXIT_ALLOWED;
  }
  if (args === 'version') {
    io.stdout(`${version()}\n`);
    return EXIT_ALLOWED;
  }
  const { json } = args;
  const fail = (err: unknown): number => {
    const e = err as Error & { code?: string };
    if (json) io.stdout(`${JSON.stringify({ error: { code: e.code ?? 'ERR_UNKNOWN', message: e.message } }, null, 2)}\n`);
    else io.stderr(`sockguard: ${e.message}\n`);
    return EXIT_INVALID;
  };
  try {
    const { host, port } = splitHostPort(args.destination);
    const env = io.env ?? process.env;
    const policy: Policy =
      args.policy !== undefined
        ? loadPolicy(args.policy, '--policy')
        : env.SOCKGUARD_POLICY
          ? loadPolicy(env.SOCKGUARD_POLICY, 'SOCKGUARD_POLICY')
          : loadPolicy('production');
    const { vetted: v, production } = await vetWithProduction(policy, host, port, io.resolver ?? systemResolver);
    const portNumber = Number(port);
    io.stdout(json ? toJson(v, portNumber, production) : render(v, portNumber, production));
    return v.allowed.length > 0 ? EXIT_ALLOWED : EXIT_DENIED;
  } catch (err) {
    return fail(err);
  }
}

/** The installed package's version (dist/cli.js and src/cli.ts both sit one level under the package root). */
export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** `sockguard broker [--linger MS]`: serves until killed (or until idle that long), then exits 0. */
async function broker(argv: readonly string[], io: CliIO): Promise<number> {
  let linger = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    if (a === '--linger' && v !== undefined && /^\d+$/.test(v)) {
      linger = Number(v);
      i++;
    } else {
      io.stderr(`sockguard: unexpected argument ${JSON.stringify(a)}\n\n${USAGE}`);
      return EXIT_INVALID;
    }
  }
  const { brokerPath, runBroker } = await import('./handoff/broker.js');
  try {
    await runBroker(brokerPath(io.env ?? process.env), linger, (line) => io.stderr(`${line}\n`));
  } catch (err) {
    io.stderr(`sockguard: ${(err as Error).message}\n`);
    return EXIT_INVALID;
  }
  return EXIT_ALLOWED;
}

function defaultIO(): CliIO {
  return {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
  };
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    // npm installs the bin as a symlink; compare real paths.
    return realpathSync(script) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: Error) => {
      process.stderr.write(`sockguard: ${err.stack ?? err.message}\n`);
      process.exitCode = EXIT_INVALID;
    },
  );
}
