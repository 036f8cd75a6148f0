/**
 * The real system for the browser test: a throwaway PostgreSQL database, RabbitMQ vhost and
 * Redis db on the machine's services, `imgconv migrate`, `imgconv api` and `imgconv worker` from
 * the repo's .venv, and the production Next.js server (the standalone build) pointed at the API
 * by env.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FRONTEND = dirname(dirname(fileURLToPath(import.meta.url)));
export const ROOT = dirname(FRONTEND);
export const ARTIFACTS = join(FRONTEND, 'test-artifacts');
const LOGS = join(ARTIFACTS, 'logs');
const VENV_BIN = process.env.IMGCONV_VENV_BIN ?? join(ROOT, '.venv', 'bin');
const PG = { host: '127.0.0.1', port: '5432', user: 'postgres' };
// Redis db of its own: the Python suites use 12 and 13.
const REDIS_DB = process.env.IMGCONV_E2E_REDIS_DB ?? '10';

export class Service {
  private readonly log: string;
  private exited: Promise<void>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    mkdirSync(LOGS, { recursive: true });
    this.log = join(LOGS, `${name}.log`);
    const out = createWriteStream(this.log);
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    try {
      return readFileSync(this.log, 'utf8');
    } catch {
      return '';
    }
  }

  tail(lines = 40): string {
    return this.output().split('\n').slice(-lines).join('\n');
  }

  /** SIGTERM to the whole process group (Celery's pool children too), SIGKILL if it lingers. */
  async stop(): Promise<void> {
    if (!this.running || this.child.pid === undefined) return;
    const group = -this.child.pid;
    try {
      process.kill(group, 'SIGTERM');
    } catch {
      return;
    }
    const killed = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 8000)),
    ]);
    if (!killed) {
      try {
        process.kill(group, 'SIGKILL');
      } catch {
        // already gone
      }
      await this.exited;
    }
  }
}

function start(name: string, command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Service {
  const child = spawn(command, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Service(name, child);
}

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    // Below 32768: the kernel hands out 32768-60999 for outgoing connections.
    const port = 20000 + (randomBytes(2).readUInt16BE(0) % 12000);
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port');
}

export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  service?: Service,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (service && !service.running) {
      throw new Error(`${what}: ${service.name} exited\n${service.tail()}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: timed out${service ? `\n${service.tail()}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function answers(url: string, status = 200): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return response.status === status;
  } catch {
    return false;
  }
}

function psql(sql: string): void {
  execFileSync('psql', ['-h', PG.host, '-p', PG.port, '-U', PG.user, '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-qc', sql], {
    stdio: 'pipe',
  });
}

function rabbitmqctl(...args: string[]): void {
  execFileSync('rabbitmqctl', ['-q', ...args], { stdio: 'pipe', timeout: 60_000 });
}

export function requireBackend(): void {
  const missing = ['imgconv', 'python']
    .map((tool) => join(VENV_BIN, tool))
    .filter((path) => !existsSync(path));
  if (missing.length || !existsSync(join(ROOT, 'api', 'imgconv_api', 'main.py'))) {
    throw new Error(
      `The backend is not installed (missing ${missing.join(', ') || 'api/imgconv_api/main.py'}). ` +
        'Run `make install` at the repository root first.',
    );
  }
  if (!existsSync(join(FRONTEND, '.next', 'standalone', 'server.js'))) {
    throw new Error('No production build: run `next build` first.');
  }
}

export class Stack {
  readonly id = randomBytes(5).toString('hex');
  readonly database = `imgconv_e2e_${this.id}`;
  vhost: string | null = null;
  apiUrl = '';
  webUrl = '';
  private services: Service[] = [];
  worker: Service | null = null;
  private env: NodeJS.ProcessEnv = { ...process.env };

  async up(): Promise<void> {
    requireBackend();
    psql(`CREATE DATABASE "${this.database}"`);
    let brokerUrl: string;
    try {
      const vhost = `imgconv_e2e_${this.id}`;
      rabbitmqctl('add_vhost', vhost);
      this.vhost = vhost;
      rabbitmqctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*');
      brokerUrl = `amqp://guest:guest@127.0.0.1:5672/${vhost}`;
    } catch {
      // No rabbitmqctl (not root, or no RabbitMQ): a Redis db as the broker is allowed locally.
      brokerUrl = `redis://127.0.0.1:6379/${Number(REDIS_DB) + 1}`;
    }
    this.env = {
      ...process.env,
      IMGCONV_MODE: 'local',
      IMGCONV_DATABASE_URL: `postgresql+psycopg://${PG.user}@${PG.host}:${PG.port}/${this.database}`,
      IMGCONV_REDIS_URL: `redis://127.0.0.1:6379/${REDIS_DB}`,
      IMGCONV_BROKER_URL: brokerUrl,
      PYTHONUNBUFFERED: '1',
    };
    execFileSync(join(VENV_BIN, 'imgconv'), ['migrate', '--wait-seconds', '10'], { cwd: ROOT, env: this.env, stdio: 'pipe' });

    const apiPort = await freePort();
    this.apiUrl = `http://127.0.0.1:${apiPort}`;
    const api = start(
      'api',
      join(VENV_BIN, 'imgconv'),
      ['api', '--host', '127.0.0.1', '--port', String(apiPort), '--log-level', 'warning'],
      ROOT,
      this.env,
    );
    this.services.push(api);
    await waitFor('API ready', () => answers(`${this.apiUrl}/readyz`), 60_000, api);

    // The production server as shipped: standalone output plus its static files.
    const standalone = join(FRONTEND, '.next', 'standalone');
    cpSync(join(FRONTEND, '.next', 'static'), join(standalone, '.next', 'static'), { recursive: true });
    if (existsSync(join(FRONTEND, 'public'))) {
      cpSync(join(FRONTEND, 'public'), join(standalone, 'public'), { recursive: true });
    }
    const webPort = await freePort();
    this.webUrl = `http://127.0.0.1:${webPort}`;
    const web = start('web', process.execPath, ['server.js'], standalone, {
      ...process.env,
      NODE_ENV: 'production',
      NEXT_TELEMETRY_DISABLED: '1',
      PORT: String(webPort),
      HOSTNAME: '127.0.0.1',
      // Read when a request arrives, not at build time: the build never saw this port.
      IMGCONV_API_URL: this.apiUrl,
    });
    this.services.push(web);
    await waitFor('web server ready', () => answers(`${this.webUrl}/`), 60_000, web);
  }

  /** Start the worker (the test runs a while without one, to cancel a queued job). */
  async startWorker(): Promise<void> {
    const worker = start(
      'worker',
      join(VENV_BIN, 'imgconv'),
      ['worker', '--concurrency', '1', '--hostname', `e2e${this.id}@%h`, '--heartbeat-file', join(LOGS, `worker-${this.id}.heartbeat`)],
      ROOT,
      this.env,
    );
    this.services.push(worker);
    this.worker = worker;
    await waitFor('worker ready', () => worker.output().includes('ready.'), 90_000, worker);
  }

  /** Write sample images with the backend's own Pillow. */
  makeImages(directory: string): void {
    mkdirSync(directory, { recursive: true });
    const script = `
import sys
from PIL import Image, ImageDraw
out = sys.argv[1]
def picture(mode, size, seed):
    im = Image.new(mode, size)
    d = ImageDraw.Draw(im)
    w, h = size
    for y in range(0, h, 4):
        c = (seed * 40 + y * 255 // h) % 256
        d.rectangle([0, y, w, y + 3], fill=(c, 255 - c, (c * 3) % 256) + ((255,) if mode == "RGBA" else ()))
    d.ellipse([w // 4, h // 4, 3 * w // 4, 3 * h // 4], fill=(250, 200, 40) + ((200,) if mode == "RGBA" else ()))
    return im
picture("RGBA", (640, 420), 1).save(f"{out}/sunset.png")
picture("RGB", (800, 600), 2).save(f"{out}/forest.jpg", quality=92)
picture("RGB", (320, 240), 3).convert("P").save(f"{out}/badge.gif")
picture("RGB", (400, 300), 4).save(f"{out}/waiting.bmp")
import os
Image.frombytes("RGB", (1000, 800), os.urandom(1000 * 800 * 3)).save(f"{out}/noise.png")
with open(f"{out}/notes.jpg", "w") as f:
    f.write("These are meeting notes, not a picture.\\n" * 20)
`;
    execFileSync(join(VENV_BIN, 'python'), ['-c', script, directory], { stdio: 'pipe' });
  }

  logs(): string {
    return this.services.map((service) => `--- ${service.name} ---\n${service.tail(25)}`).join('\n');
  }

  async down(): Promise<void> {
    for (const service of [...this.services].reverse()) await service.stop();
    this.services = [];
    try {
      psql(`DROP DATABASE IF EXISTS "${this.database}" WITH (FORCE)`);
    } catch (error) {
      console.warn(`could not drop ${this.database}:`, error);
    }
    if (this.vhost) {
      try {
        rabbitmqctl('delete_vhost', this.vhost);
      } catch (error) {
        console.warn(`could not delete vhost ${this.vhost}:`, error);
      }
    }
  }
}
