// `npm start`: the production server of the standalone build (`output: 'standalone'`; `next
// start` warns that it does not work with one). The server serves `.next/static` and
// `public` only from beside itself, so they are copied there first, as scripts/run_local.py,
// the browser test (e2e/stack.ts) and the image (Dockerfile) do.
import { cpSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const standalone = join(root, '.next', 'standalone');
const server = join(standalone, 'server.js');
if (!existsSync(server)) {
  console.error(`no ${server}: run \`npm run build\` first`);
  process.exit(1);
}
cpSync(join(root, '.next', 'static'), join(standalone, '.next', 'static'), { recursive: true });
if (existsSync(join(root, 'public'))) {
  cpSync(join(root, 'public'), join(standalone, 'public'), { recursive: true });
}
await import(pathToFileURL(server).href);
