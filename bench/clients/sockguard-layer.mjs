// Builds the SocketLayer every sockguard arm uses. Loaded lazily so the bench runs the other arms
// before the addon is built.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const distEntry = join(root, 'dist', 'index.js');

/**
 * policy=development (default) or policy=operator: a policy file allowing the bench's 127.0.0.0/8
 * range, written by the driver (bench/policies/), so the connect-rate arm pays for a real rule match.
 */
export async function createLayer(o) {
  // dist=PATH: another build of sockguard (the driver's --baseline arms).
  const entry = o.dist || distEntry;
  if (!existsSync(entry)) throw new Error(`${entry} missing: run \`npm run build\``);
  const { SocketLayer } = await import(pathToFileURL(entry).href);
  // A policy file path goes to the layer as is, so its loader (and its errors) are the real ones.
  const policy = o.policy || 'development';
  return new SocketLayer({ appId: 'bench', policy, idleTimeoutMs: 0 });
}
