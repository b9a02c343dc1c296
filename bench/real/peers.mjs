// The real servers the real-workload scenarios talk to: finding them, starting them on a loopback address,
// stopping them. The driver passes in its process tracking, so every server started here is stopped on
// exit, failure and Ctrl-C like any other bench process.
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

/**
 * @param {{ track: (c: import('node:child_process').ChildProcess) => any, serverCpu: string|number, log: (s: string) => void }} ctx
 */
export function createPeers({ track, serverCpu, log }) {
  const tempDirs = [];
  const tmp = (prefix) => {
    const d = mkdtempSync(join(tmpdir(), `sockguard-bench-${prefix}-`));
    tempDirs.push(d);
    return d;
  };
  const cached = new Map();
  const once = (key, fn) => {
    if (!cached.has(key)) cached.set(key, fn());
    return cached.get(key);
  };

  /** A self-signed certificate made for this run; the test fixture pair when openssl is missing. */
  function certificate() {
    return once('cert', () => {
      const dir = tmp('tls');
      const key = join(dir, 'key.pem');
      const cert = join(dir, 'cert.pem');
      try {
        execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
          '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost'], { stdio: 'ignore', timeout: 20000 });
        return { ok: true, key, cert };
      } catch {
        const fk = join(root, 'test', 'fixtures', 'key.pem');
        const fc = join(root, 'test', 'fixtures', 'cert.pem');
        if (existsSync(fk) && existsSync(fc)) return { ok: true, key: fk, cert: fc };
        return { ok: false, why: 'no openssl to make a certificate and no test/fixtures/key.pem + cert.pem' };
      }
    });
  }

  // ---- redis -------------------------------------------------------------------------------------

  function findRedis() {
    return once('redis', () => {
      const found = which('redis-server', ['/usr/bin', '/usr/sbin', '/usr/local/bin']);
      if (found) return { ok: true, bin: found };
      const installed = aptInstall('redis-server');
      if (installed.ok) {
        const bin = which('redis-server', ['/usr/bin', '/usr/sbin']);
        if (bin) return { ok: true, bin };
      }
      return { ok: false, why: `redis-server not found on PATH, /usr/bin or /usr/sbin (${installed.why})` };
    });
  }

  async function startRedis(host) {
    const { bin } = findRedis();
    const port = await freePort(host);
    const dir = tmp('redis');
    const child = spawnPinned([bin, '--bind', host, '--port', String(port), '--save', '', '--appendonly', 'no',
      '--dir', dir, '--protected-mode', 'no', '--daemonize', 'no']);
    await ready(child, /Ready to accept connections/, 'redis-server');
    return { child, host, port };
  }

  // ---- postgres ----------------------------------------------------------------------------------

  /** PostgreSQL binaries (initdb + postgres) from PATH or Debian's /usr/lib/postgresql/<version>/bin. */
  function findPostgres() {
    return once('pg', () => {
      const dirs = [];
      const base = '/usr/lib/postgresql';
      if (existsSync(base)) {
        for (const v of readdirSync(base).sort((a, b) => Number(b) - Number(a))) dirs.push(join(base, v, 'bin'));
      }
      const initdb = which('initdb', dirs);
      const postgres = initdb && existsSync(join(dirname(initdb), 'postgres')) ? join(dirname(initdb), 'postgres') : which('postgres', dirs);
      if (!initdb || !postgres) return { ok: false, why: 'PostgreSQL binaries (initdb, postgres) not found on PATH or under /usr/lib/postgresql/<version>/bin' };
      // PostgreSQL refuses to run as root: run it as `postgres`, else `nobody`.
      let ids = {};
      if (process.getuid?.() === 0) {
        const u = lookupUser('postgres') ?? lookupUser('nobody');
        if (!u) return { ok: false, why: 'running as root and neither a postgres nor a nobody user exists to run PostgreSQL' };
        ids = u;
      }
      return { ok: true, initdb, postgres, ids };
    });
  }

  /** One cluster per run (initdb costs seconds); each scenario starts its own server on it. */
  function postgresCluster() {
    return once('pgdata', () => {
      const pg = findPostgres();
      const dir = tmp('pg');
      if (pg.ids.uid !== undefined) chownSync(dir, pg.ids.uid, pg.ids.gid);
      const data = join(dir, 'data');
      try {
        execFileSync(pg.initdb, ['-D', data, '-A', 'trust', '-U', 'bench', '--no-sync', '--locale=C', '-E', 'UTF8'],
          { stdio: 'pipe', timeout: 120000, cwd: dir, ...pg.ids });
        return { ok: true, dir, data };
      } catch (err) {
        return { ok: false, why: `initdb failed: ${String(err.stderr || err.message).trim().split('\n').slice(-1)[0]}` };
      }
    });
  }

  async function startPostgres(host) {
    const pg = findPostgres();
    const cluster = postgresCluster();
    if (!cluster.ok) throw new Error(cluster.why);
    const port = await freePort(host);
    // Durability off: the workloads read, and nothing here must outlive the run.
    const child = spawnPinned([pg.postgres, '-D', cluster.data, '-k', cluster.dir, '-h', host, '-p', String(port),
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=20'],
      { cwd: cluster.dir, ...pg.ids });
    await ready(child, /ready to accept connections/, 'postgres');
    return { child, host, port };
  }

  /** Whether a peer can run, and why not: checked once per run, before the first trial. */
  function check(peer) {
    switch (peer) {
      case 'tls': return certificate();
      case 'http': return { ok: true };
      case 'redis': return findRedis();
      case 'postgres': {
        const pg = findPostgres();
        return pg.ok ? postgresCluster() : pg;
      }
      default: return { ok: false, why: `unknown peer ${peer}` };
    }
  }

  function cleanup() {
    for (const d of tempDirs.splice(0)) {
      try { rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
    }
  }

  function spawnPinned(cmd, opts = {}) {
    return track(spawn('taskset', ['-c', String(serverCpu), ...cmd], { stdio: ['ignore', 'pipe', 'pipe'], ...opts }));
  }

  function aptInstall(pkg) {
    if (process.getuid?.() !== 0) return { ok: false, why: 'not root, so no apt-get install' };
    if (!which('apt-get', ['/usr/bin'])) return { ok: false, why: 'no apt-get' };
    // Without a policy-rc.d refusing service starts, installing would start a system-wide server.
    try {
      execFileSync('/usr/sbin/policy-rc.d', [], { stdio: 'ignore' });
      return { ok: false, why: '/usr/sbin/policy-rc.d does not refuse service starts' };
    } catch (err) {
      if (err.status !== 101) return { ok: false, why: 'no /usr/sbin/policy-rc.d exiting 101 (it keeps apt from starting services)' };
    }
    log(`bench: installing ${pkg} with apt-get\n`);
    try {
      execFileSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], { stdio: 'ignore', timeout: 300000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
      return { ok: true };
    } catch (err) {
      return { ok: false, why: `apt-get install ${pkg} failed (${err.status ?? err.message})` };
    }
  }

  return { check, certificate, startRedis, startPostgres, cleanup };
}

function which(name, extra = []) {
  for (const d of [...(process.env.PATH ?? '').split(':').filter(Boolean), ...extra]) {
    const p = join(d, name);
    if (existsSync(p)) return p;
  }
  return null;
}

function lookupUser(name) {
  try {
    const uid = Number(execFileSync('id', ['-u', name], { stdio: 'pipe' }).toString().trim());
    const gid = Number(execFileSync('id', ['-g', name], { stdio: 'pipe' }).toString().trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : null;
  } catch {
    return null;
  }
}

/** A port free on `host` right now (servers that cannot take port 0 get it on their command line). */
export function freePort(host) {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once the server logs `pattern`; rejects if it exits or stays silent for 30 s. */
function ready(child, pattern, name) {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not start: ${out.trim().slice(-300)}`));
    }, 30000);
    let up = false;
    const onData = (d) => {
      if (up) return;
      if (out.length < 65536) out += d;
      if (pattern.test(out)) {
        up = true;
        clearTimeout(timer);
        resolve();
      }
    };
    // Keep draining: a full pipe would stall the server mid-trial.
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${sig ?? code}): ${out.trim().slice(-300)}`));
    });
  });
}
