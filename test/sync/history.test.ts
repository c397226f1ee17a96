import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, expectedRows, makeShop } from './harness.js';

/** Case 7 of issue 14: runs from a terminal or cron are recorded like a worker's, failed ones as failed. */

interface Row {
  audience: string;
  last_run: { reason: string; outcome: string; error: string | null; run: string } | null;
  segment_size: number | null;
  members: number | null;
  added: number | null;
  platform_size: number | null;
}
const status = (dir: string) => JSON.parse(cli(['status', '--json'], dir).stdout).audiences as Row[];

describe('every run recorded', () => {
  it('a sync from the command line shows in status; a failed one shows as failed, without sizes', async () => {
    const shop = await makeShop();
    expect(status(shop.dir).every((r) => r.last_run === null)).toBe(true);
    expect([0, 3]).toContain(cli(['sync'], shop.dir).code);

    const rows = await expectedRows(shop.config);
    const first = status(shop.dir);
    expect(first).toHaveLength(13);
    for (const r of first) {
      expect(r.last_run, r.audience).toMatchObject({ reason: 'cli', outcome: 'completed', error: null });
      expect(r.members, r.audience).toBe(rows.get(r.audience)!.size);
      expect(r.added, r.audience).toBe(rows.get(r.audience)!.size);
      expect(r.segment_size, r.audience).toBeGreaterThanOrEqual(r.members!);
    }
    // The file destination's own count: one identifier per email or phone the members brought.
    expect(first.every((r) => r.platform_size !== null)).toBe(true);

    // The export breaks: a fifth of the order rows lose their amount, far beyond max_bad_row_share.
    const orders = path.join(shop.dir, 'shop', 'orders.csv');
    const lines = readFileSync(orders, 'utf8').split('\n');
    writeFileSync(
      orders,
      lines.map((l, i) => (i > 0 && i % 5 === 0 && l ? l.replace(/,[^,]*$/, ',n/a') : l)).join('\n'),
    );
    const broken = cli(['sync'], shop.dir);
    expect(broken.code).toBe(1);
    const after = status(shop.dir);
    for (const r of after) {
      expect(r.last_run, r.audience).toMatchObject({ reason: 'cli', outcome: 'failed' });
      expect(r.last_run!.error).toMatch(/bad/);
      expect(r.last_run!.run).not.toBe(first.find((x) => x.audience === r.audience)!.last_run!.run);
      // No sizes: a chart shows a gap, not a drop to zero.
      expect(r.segment_size).toBeNull();
      expect(r.members).toBeNull();
    }
  });
});
