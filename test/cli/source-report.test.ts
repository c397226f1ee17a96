import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { tempDir, writeTemp } from '../helpers.js';

const BIN = path.resolve('dist/app/cli/bin.js');
const redisUrl = inject('redisUrl');

function cli(args: string[], cwd = process.cwd()) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd,
    env: { ...process.env, CI: 'true', REDIS_URL: redisUrl, LOG_LEVEL: 'info' },
    encoding: 'utf8',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** JSON log lines on stderr (stderr is a pipe here, so logs are JSON). */
const logLines = (stderr: string): Record<string, unknown>[] =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/**
 * 40 orders of 20 customers with emails; row 7 has a broken date, row 12 a broken amount, row 20 is dated
 * after the analysis date (2026-01-01).
 */
function shop(): string {
  const dir = tempDir('audience-sync-report-');
  const rows = ['customer_id,order_date,amount,email'];
  for (let r = 1; r <= 40; r++) {
    const c = r % 20;
    const date =
      r === 7 ? '2025-13-45' : r === 20 ? '2027-03-01' : `2025-${String((r % 12) + 1).padStart(2, '0')}-10`;
    const amount = r === 12 ? '12,50' : String(10 + r);
    rows.push(`c${c},${date},${amount === '12,50' ? '"12,50"' : amount},c${c}@example.com`);
  }
  writeTemp('orders.csv', rows.join('\n') + '\n', dir);
  writeTemp(
    'audience-sync.yaml',
    `source: { type: csv, path: orders.csv, max_bad_row_share: 0.1 }
scoring: { analysis_date: "2026-01-01" }
destinations:
  local: { type: file, path: out }
sync: { redis_prefix: test-${path.basename(dir)} }
`,
    dir,
  );
  return dir;
}

const EXPECTED = {
  rows: 40,
  bad_rows: 2,
  bad_row_reasons: { 'unparseable order_date': 1, 'non-numeric amount': 1 },
  bad_row_samples: [
    { row: 7, reason: "unparseable order_date: '9999-99-99' (date_format auto)" },
    { row: 12, reason: "non-numeric amount: '99,99'" },
  ],
  future_rows: 1,
  future_row_samples: [20],
};

describe('plan and sync report the rows the source could not use, as score does', () => {
  it('score: in the JSON summary and on stderr', () => {
    const dir = shop();
    const json = cli(['score', '--json'], dir);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stderr.trim().split('\n').pop()!)).toMatchObject(EXPECTED);
    const text = cli(['score'], dir);
    expect(text.stderr).toMatch(/2 of 40 rows skipped \(5\.0 %\)/);
    expect(text.stderr).toMatch(/row 7: unparseable order_date/);
    expect(text.stderr).toMatch(/1 order after the analysis date 2026-01-01 left out \(row 20\)/);
  });

  it('plan: in --json, in the table output on stderr, and in the logs', () => {
    const dir = shop();
    const json = cli(['plan', '--json'], dir);
    expect(json.code, json.stderr).toBe(0);
    const out = JSON.parse(json.stdout) as { source: unknown; plans: unknown[] };
    expect(out.source).toMatchObject(EXPECTED);
    expect(out.plans.length).toBeGreaterThan(0);
    expect(logLines(json.stderr).some((l) => l.bad_rows === 2 && l.future_rows === 1)).toBe(true);

    const text = cli(['plan'], dir);
    expect(text.code).toBe(0);
    expect(text.stderr).toMatch(
      /2 of 40 rows skipped \(5\.0 %\): 1 × unparseable order_date, 1 × non-numeric amount/,
    );
    expect(text.stderr).toMatch(/row 12: non-numeric amount/);
    expect(text.stderr).toMatch(/1 order after the analysis date 2026-01-01 left out \(row 20\)/);
    // No value of a bad row is shown, only its form.
    expect(text.stderr).not.toMatch(/12,50|2025-13-45/);
  });

  it('sync: in --json, on stderr, and in the logs', () => {
    const dir = shop();
    const json = cli(['sync', '--json'], dir);
    expect(json.code, json.stderr).toBe(0);
    const out = JSON.parse(json.stdout) as { source: unknown; results: { added: number }[] };
    expect(out.source).toMatchObject(EXPECTED);
    // Every customer still has a usable order (c0's other order is row 40): 20 emails sent.
    expect(out.results.reduce((a, r) => a + r.added, 0)).toBe(20);
    expect(logLines(json.stderr).some((l) => l.bad_rows === 2)).toBe(true);
    const sent = readFileSync(path.join(dir, 'out', 'changes.jsonl'), 'utf8');
    expect(sent).not.toBe('');

    const text = cli(['sync'], dir);
    expect(text.code).toBe(0);
    expect(text.stderr).toMatch(/2 of 40 rows skipped/);
    expect(text.stderr).toMatch(/row 7: unparseable order_date/);
    expect(text.stderr).toMatch(/1 order after the analysis date 2026-01-01 left out \(row 20\)/);
  });
});

describe('audience-sync --version', () => {
  it('prints the package version and exits 0', () => {
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    const r = cli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });
});
