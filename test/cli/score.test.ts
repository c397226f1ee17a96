import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCsv, tempDir, writeTemp } from '../helpers.js';

const BIN = path.resolve('dist/app/cli/bin.js');

/** Runs the built CLI as a user would (`npm test` builds first). */
function cli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const result = spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? process.cwd(),
    env: { ...process.env, CI: 'true', ...options.env },
    encoding: 'utf8',
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const ORDERS = [
  'customer_id,order_date,amount',
  ...Array.from(
    { length: 60 },
    (_, i) => `c${i % 20},2025-${String((i % 12) + 1).padStart(2, '0')}-15,${(i * 37) % 500}.25`,
  ),
].join('\n');

describe('audience-sync score', () => {
  it('writes one row per customer with the documented columns to stdout, and sizes on stderr', () => {
    const input = writeTemp('orders.csv', ORDERS);
    const { code, stdout, stderr } = cli(['score', '--input', input, '--analysis-date', '2026-01-01']);
    expect(code).toBe(0);
    const rows = readCsv(stdout);
    expect(Object.keys(rows[0]!)).toEqual([
      'customer_id',
      'recency_days',
      'frequency',
      'monetary',
      'r',
      'f',
      'm',
      'rfm_code',
      'segment',
    ]);
    expect(rows).toHaveLength(20);
    for (const row of rows) {
      expect(Number(row.rfm_code)).toBe(Number(row.r) * 100 + Number(row.f) * 10 + Number(row.m));
      expect(row.segment).not.toBe('');
    }
    expect(stderr).toMatch(/20 customers from 60 orders rows, quantile scores as of 2026-01-01/);
    expect(stderr).toMatch(/segment\s+customers\s+share/);
  });

  it('writes JSON lines to a file and a JSON summary with --json', () => {
    const dir = tempDir();
    const input = writeTemp('orders.csv', ORDERS, dir);
    const out = path.join(dir, 'scores.jsonl');
    const { code, stdout, stderr } = cli([
      'score',
      '-i',
      input,
      '--analysis-date',
      '2026-01-01',
      '--method',
      'ntile',
      '--format',
      'jsonl',
      '--out',
      out,
      '--json',
    ]);
    expect(code).toBe(0);
    expect(stdout).toBe('');
    const lines = readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(20);
    expect(lines[0]).toHaveProperty('rfm_code');
    // NTILE: 20 customers → exactly 4 per score.
    const counts = [1, 2, 3, 4, 5].map((s) => lines.filter((l) => l.r === s).length);
    expect(counts).toEqual([4, 4, 4, 4, 4]);
    const summary = JSON.parse(stderr.trim().split('\n').pop()!);
    expect(summary).toMatchObject({ method: 'ntile', customers: 20, rows: 60, bad_rows: 0 });
  });

  it('exits 2 on bad usage and bad config, 1 when the source is broken', () => {
    expect(cli(['score']).code).toBe(2);
    expect(cli(['score', '--input', 'x.csv', '--method', 'median']).code).toBe(2);
    expect(cli(['score', '--input', 'x.csv', '--analysis-date', '2026-02-30']).stderr).toMatch(
      /--analysis-date/,
    );
    expect(cli(['nonsense']).code).toBe(2);
    const missing = cli(['score', '--input', '/nonexistent.csv']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read \/nonexistent\.csv/);
    const broken = writeTemp('o.csv', 'customer_id,order_date,amount\na,never,1\nb,2025-01-01,1\n');
    const result = cli(['score', '--input', broken]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/1 of 2 rows are bad/);
    expect(result.stdout).toBe('');
  });

  it('uses ./audience-sync.yaml when present, with flags on top', () => {
    const dir = tempDir();
    writeTemp('orders.csv', ORDERS, dir);
    writeTemp(
      'audience-sync.yaml',
      'source: { type: csv, path: orders.csv }\nscoring: { analysis_date: "2026-01-01", method: ntile }\n',
      dir,
    );
    const fromFile = cli(['score', '--json'], { cwd: dir });
    expect(fromFile.code).toBe(0);
    expect(JSON.parse(fromFile.stderr.trim())).toMatchObject({
      method: 'ntile',
      analysis_date: '2026-01-01',
    });
    const overridden = cli(['score', '--json', '--method', 'quantile'], { cwd: dir });
    expect(JSON.parse(overridden.stderr.trim())).toMatchObject({ method: 'quantile' });
  });

  it('validate checks a config and exits 2 with the path of each problem', () => {
    expect(cli(['validate', '--config', 'config/example.yaml']).code).toBe(0);
    const bad = writeTemp('bad.yaml', 'source:\n  type: csv\n  path: a.csv\n  colums: {}\n');
    const result = cli(['validate', '--config', bad]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/bad\.yaml:4: source\.colums: unknown key; did you mean 'columns'\?/);
  });

  it('prints help with exit code 0', () => {
    const result = cli(['score', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/--analysis-date/);
  });
});
