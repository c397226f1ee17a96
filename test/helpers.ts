import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export function tempDir(prefix = 'audience-sync-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** Writes a file into a fresh temp folder and returns its path. */
export function writeTemp(name: string, content: string, dir = tempDir()): string {
  const file = path.join(dir, name);
  writeFileSync(file, content);
  return file;
}

/** A tiny CSV parser for test assertions on our own output (no quotes with newlines). */
export function readCsv(text: string): Record<string, string>[] {
  const lines = text.trim().split('\n');
  const split = (line: string): string[] => {
    const out: string[] = [];
    let cur = '';
    let quoted = false;
    for (let i = 0; i < line.length; i++) {
      const c = line[i]!;
      if (quoted) {
        if (c === '"' && line[i + 1] === '"') {
          cur += '"';
          i++;
        } else if (c === '"') quoted = false;
        else cur += c;
      } else if (c === '"') quoted = true;
      else if (c === ',') {
        out.push(cur);
        cur = '';
      } else cur += c;
    }
    out.push(cur);
    return out;
  };
  const header = split(lines[0]!);
  return lines.slice(1).map((l) => Object.fromEntries(split(l).map((v, i) => [header[i]!, v])));
}
