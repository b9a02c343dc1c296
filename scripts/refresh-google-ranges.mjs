#!/usr/bin/env node
/**
 * Refreshes data/google-ranges.json from the list Google publishes. Run by hand (or by a scheduled job that
 * opens a pull request); never by tests or CI, and sockguard never fetches the list at run time: the vendored
 * snapshot is what ships, so a policy decision never depends on the network.
 *
 * Usage: node scripts/refresh-google-ranges.mjs [--url URL] [--out FILE] [--dry-run]
 *
 * The file is written verbatim (syncToken and creationTime kept) after it has been validated, so a truncated
 * or malformed download can never replace a good snapshot. Google Cloud customer ranges (cloud.json) are a
 * different list and are deliberately not merged in.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import ipaddr from 'ipaddr.js';

const DEFAULT_URL = 'https://www.gstatic.com/ipranges/goog.json';
const DEFAULT_OUT = fileURLToPath(new URL('../data/google-ranges.json', import.meta.url));

function parseArgs(argv) {
  const opts = { url: DEFAULT_URL, out: DEFAULT_OUT, dryRun: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--url') opts.url = argv[++i];
    else if (a === '--out') opts.out = argv[++i];
    else if (a === '--dry-run') opts.dryRun = true;
    else if (a === '--help' || a === '-h') {
      console.log('Usage: node scripts/refresh-google-ranges.mjs [--url URL] [--out FILE] [--dry-run]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!opts.url || !opts.out) throw new Error('--url and --out need a value');
  return opts;
}

/** Throws unless `doc` has the published structure and every prefix is a valid network prefix. */
export function validateGoogleRanges(doc) {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('top level is not an object');
  if (typeof doc.syncToken !== 'string' || !/^\d+$/.test(doc.syncToken)) throw new Error('syncToken missing');
  if (typeof doc.creationTime !== 'string' || Number.isNaN(Date.parse(doc.creationTime))) {
    throw new Error('creationTime missing or not a date');
  }
  if (!Array.isArray(doc.prefixes) || doc.prefixes.length === 0) throw new Error('prefixes missing or empty');
  doc.prefixes.forEach((p, i) => {
    const keys = p && typeof p === 'object' ? Object.keys(p) : [];
    if (keys.length !== 1 || (keys[0] !== 'ipv4Prefix' && keys[0] !== 'ipv6Prefix')) {
      throw new Error(`prefixes[${i}] must have exactly one of ipv4Prefix / ipv6Prefix`);
    }
    const cidr = p[keys[0]];
    const want = keys[0] === 'ipv4Prefix' ? 'ipv4' : 'ipv6';
    if (typeof cidr !== 'string' || !ipaddr.isValidCIDR(cidr)) throw new Error(`prefixes[${i}]: invalid CIDR ${cidr}`);
    const [addr, len] = ipaddr.parseCIDR(cidr);
    if (addr.kind() !== want) throw new Error(`prefixes[${i}]: ${cidr} is not ${want}`);
    const net = want === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(cidr) : ipaddr.IPv6.networkAddressFromCIDR(cidr);
    if (net.toString() !== addr.toString()) throw new Error(`prefixes[${i}]: ${cidr} has host bits set (/${len})`);
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const res = await fetch(opts.url, { headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`GET ${opts.url}: HTTP ${res.status}`);
  const text = await res.text();
  const doc = JSON.parse(text);
  validateGoogleRanges(doc);
  let previous;
  try {
    previous = JSON.parse(await readFile(opts.out, 'utf8'));
  } catch {
    previous = undefined;
  }
  const summary = `${doc.prefixes.length} prefixes, syncToken ${doc.syncToken}, created ${doc.creationTime}`;
  if (previous?.syncToken === doc.syncToken) {
    console.log(`unchanged: ${summary}`);
    return;
  }
  if (opts.dryRun) {
    console.log(`would write ${opts.out}: ${summary}`);
    return;
  }
  // Write beside the target and rename, so readers never see a half-written file.
  const tmp = `${opts.out}.tmp-${process.pid}`;
  await writeFile(tmp, text.endsWith('\n') ? text : `${text}\n`);
  await rename(tmp, opts.out);
  console.log(`wrote ${opts.out}: ${summary} (was ${previous?.syncToken ?? 'absent'})`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err) => {
    console.error(`refresh-google-ranges: ${err.message}`);
    process.exitCode = 1;
  });
}
