// Bundles the web console (console/*.tsx, preact + ECharts) into dist/console for the API server to serve.
// `npm run build` runs it after tsc, so users never run a step of their own.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdir = path.join(root, 'dist', 'console');
rmSync(outdir, { recursive: true, force: true });
process.chdir(root);
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
// Compressed once here; the server sends the copy the browser accepts (@fastify/static's preCompressed).
for (const [file] of outputs) {
  const bytes = readFileSync(path.join(root, file));
  writeFileSync(path.join(root, `${file}.gz`), gzipSync(bytes, { level: 9 }));
  writeFileSync(
    path.join(root, `${file}.br`),
    brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }),
  );
}
const named = (ext) => path.basename(outputs.find(([file]) => file.endsWith(ext))[0]);
writeFileSync(
  path.join(outdir, 'manifest.json'),
  JSON.stringify({ js: named('.js'), css: named('.css') }) + '\n',
);
const kib = (bytes) => `${(bytes / 1024).toFixed(0)} KiB`;
const sizes = outputs.map(
  ([file, o]) => `${path.basename(file)} ${kib(o.bytes)} (${kib(readFileSync(`${file}.br`).length)} brotli)`,
);
process.stderr.write(`console: built ${sizes.join(', ')} into dist/console\n`);
