import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Which folder may import which: the composition roots (`app/`) choose the connectors and wire the
 * layers; neither the core (`src/`) nor the job layer (`jobs/`) knows a connector: they are handed the registry.
 */
const root = path.resolve('.');

/** Every non-test TypeScript file under a folder, with the folders its relative imports land in. */
function importsUnder(folder: string): { file: string; target: string }[] {
  const out: { file: string; target: string }[] = [];
  for (const entry of readdirSync(path.join(root, folder), { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts') || /\.(test|bench)\.ts$/.test(entry.name)) continue;
    const file = path.join(entry.parentPath, entry.name);
    if (file.includes(`${path.sep}fixtures${path.sep}`)) continue;
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g))
      out.push({
        file: path.relative(root, file),
        target: path.relative(root, path.resolve(path.dirname(file), m[1]!)),
      });
  }
  return out;
}

const offending = (folder: string, forbidden: (target: string) => boolean) =>
  importsUnder(folder)
    .filter((i) => forbidden(i.target))
    .map((i) => `${i.file} imports ${i.target}`);

describe('layers', () => {
  it('finds imports (the scan itself works)', () => {
    expect(importsUnder('src').length).toBeGreaterThan(100);
    expect(importsUnder('app').some((i) => i.target === 'connectors/index.js')).toBe(true);
  });

  it('nothing in the core, the job layer or the connectors imports a composition root', () => {
    for (const folder of ['src', 'jobs', 'connectors'])
      expect(offending(folder, (t) => t.startsWith(`app${path.sep}`))).toEqual([]);
  });

  it('neither the core nor the job layer imports a connector (the job layer is handed the registry app/ chose)', () => {
    for (const folder of ['src', 'jobs'])
      expect(offending(folder, (t) => t.startsWith(`connectors${path.sep}`))).toEqual([]);
  });
});
