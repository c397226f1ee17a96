import { afterAll, describe, expect, it } from 'vitest';
import { cli, cliEnv, expectedAudiences, fileAudiences, makeShop } from '../sync/harness.js';
import { killAll, run } from './procs.js';

afterAll(killAll);

describe("a worker's runs share one read of the source", () => {
  it('lends a read to the runs after it while the files are unchanged, and reads again once they change', async () => {
    const shop = await makeShop({ customers: 300, seed: 7, sync: 'max_removal_share: 1' });
    const worker = run(['worker'], { cwd: shop.dir, env: { ...cliEnv(), LOG_LEVEL: 'info' } });
    await worker.waitFor(/worker started/);
    let runs = 0;
    // A run asked and waited for; then its log lines, which the worker writes as the job ends.
    const resync = async (...args: string[]) => {
      const r = cli(['resync', '-d', 'local', ...args, '--wait'], shop.dir);
      expect(r.code, `${r.stderr}\nworker: ${worker.stderr()}`).toBe(0);
      await worker.waitFor(new RegExp(`("msg":"synced local"[^]*){${++runs}}`));
    };
    const lines = (pattern: RegExp) =>
      worker
        .stderr()
        .split('\n')
        .filter((line) => pattern.test(line)).length;
    // Three runs asked one after the other (two audiences, then the destination): one read.
    await resync('-a', 'RFM: Champions');
    await resync('-a', 'Slipping away');
    await resync();
    expect(lines(/read and scored the source: 300 customers/)).toBe(1);
    expect(lines(/took the source as another run read it at/)).toBe(2);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    // The export changes: the next run reads it, and the audiences follow it.
    shop.editCustomers((cells, header, r) => {
      if (r % 4 === 1) cells[header.indexOf('email')] = `moved-${r}@example.org`;
    });
    await resync();
    expect(lines(/read and scored the source/)).toBe(2);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  });
});
