// Bundles the web console (console/*.tsx, preact + ECharts) into dist/console for the API server to serve.
// `npm run build` runs it after tsc, so users never run a step of their own.
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdir = path.join(root, 'dist', 'console');
rmSync(outdir, { recursive: true, force: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: { app: 'console/main.tsx' },
  bundle: true,
  format: 'esm',
  target: ['es2022', 'chrome110', 'firefox110', 'safari16'],
  minify: true,
  sourcemap: true,
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'linked',
  outdir,
  // Hashed names: the server sends them as immutable, and the page names them through manifest.json.
  entryNames: '[name]-[hash]',
  metafile: true,
  logLevel: 'warning',
});
const outputs = Object.entries(result.metafile.outputs).filter(
  ([file]) => file.endsWith('.js') || file.endsWith('.css'),
);
const named = (ext) => path.basename(outputs.find(([file]) => file.endsWith(ext))[0]);
writeFileSync(
  path.join(outdir, 'manifest.json'),
  JSON.stringify({ js: named('.js'), css: named('.css') }) + '\n',
);
const sizes = outputs.map(([file, o]) => `${path.basename(file)} ${(o.bytes / 1024).toFixed(0)} KiB`);
process.stderr.write(`console: built ${sizes.join(', ')} into dist/console\n`);
