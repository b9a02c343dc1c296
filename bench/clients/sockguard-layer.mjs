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
  if (!existsSync(distEntry)) throw new Error('dist/index.js missing: run `npm run build`');
  const { SocketLayer } = await import(pathToFileURL(distEntry).href);
  // A policy file path goes to the layer as is, so its loader (and its errors) are the real ones.
  const policy = o.policy || 'development';
  return new SocketLayer({ appId: 'bench', policy, idleTimeoutMs: 0 });
}
