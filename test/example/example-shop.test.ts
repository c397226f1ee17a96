/**
 * The committed example shop in examples/shop must be exactly what the generator produces, which also
 * checks that the generator's output does not drift between versions or platforms.
 *
 * To regenerate it after an intentional change to the generator:
 *
 *   UPDATE_EXAMPLE_SHOP=1 npx vitest run test/example/example-shop.test.ts
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { generateShop, type ShopOptions } from '../../src/example/generate.js';

const EXAMPLE_DIR = fileURLToPath(new URL('../../examples/shop/', import.meta.url));
const EXAMPLE_OPTIONS: ShopOptions = { customers: 2000, seed: 42, analysisDate: '2026-01-01' };

describe('examples/shop', () => {
  it.runIf(process.env.UPDATE_EXAMPLE_SHOP === '1')('regenerates the committed example shop', async () => {
    const summary = await generateShop(EXAMPLE_DIR, EXAMPLE_OPTIONS);
    console.log(`examples/shop: ${summary.customers} customers, ${summary.orders} orders`);
  });

  it('is byte-identical to a fresh generation with the documented options', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shop-example-'));
    try {
      const summary = await generateShop(dir, EXAMPLE_OPTIONS);
      expect(summary.customers).toBe(2000);
      for (const name of ['orders.csv', 'customers.csv']) {
        const fresh = await readFile(join(dir, name));
        const committed = await readFile(join(EXAMPLE_DIR, name));
        expect(committed.equals(fresh), `examples/shop/${name} differs from a fresh generation`).toBe(true);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
