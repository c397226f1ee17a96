import { describe, expect, it } from 'vitest';
import { StallWatch } from '../../src/stall.js';

describe('the stall watch', () => {
  it('reports the longest time the event loop was held up, at least as long as a blocking loop ran', async () => {
    const watch = new StallWatch();
    // Let it sample once, then hold the loop for 300 ms by the clock (however fast the machine is).
    await new Promise((resolve) => setTimeout(resolve, 50));
    const until = performance.now() + 300;
    while (performance.now() < until);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(watch.stop()).toBeGreaterThanOrEqual(280);
  });
});
