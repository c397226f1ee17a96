import { describe, expect, it } from 'vitest';
import { MemoryBudget } from '../../src/identify/budget.js';

/** Whether a promise has settled, after the microtasks queued now have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe("a process's budget for identity tables", () => {
  it('lets runs in side by side while they fit, and a run alone whatever its size', async () => {
    const budget = new MemoryBudget(100);
    const a = await budget.take(60);
    const b = await budget.take(40);
    expect(budget.used).toBe(100);
    a();
    b();
    expect(budget.used).toBe(0);
    // Larger than the whole budget: alone, it goes.
    const big = await budget.take(500);
    expect(budget.used).toBe(500);
    big();
    big(); // given back once
    expect(budget.used).toBe(0);
  });

  it('holds a run that does not fit until others give back enough, in the order they asked', async () => {
    const budget = new MemoryBudget(100);
    const waits: number[] = [];
    const first = await budget.take(70);
    const second = budget.take(50, undefined, (held) => waits.push(held));
    // Small enough to fit now, but it does not overtake the run before it.
    const third = budget.take(20);
    expect(waits).toEqual([70]);
    expect(await settled(second)).toBe(false);
    expect(await settled(third)).toBe(false);
    first();
    const [releaseSecond, releaseThird] = await Promise.all([second, third]);
    expect(budget.used).toBe(70);
    releaseSecond();
    releaseThird();
    expect(budget.used).toBe(0);
  });

  it('lets a waiting run go when its run is stopped, and the one behind it in if it fits', async () => {
    const budget = new MemoryBudget(100);
    const first = await budget.take(60);
    const stop = new AbortController();
    const second = budget.take(90, stop.signal);
    const third = budget.take(30);
    expect(await settled(third)).toBe(false);
    stop.abort(new Error('lost the audience lease'));
    await expect(second).rejects.toThrow('lost the audience lease');
    const releaseThird = await third;
    expect(budget.used).toBe(90);
    first();
    releaseThird();
    expect(budget.used).toBe(0);
    // A run already stopped does not take anything.
    await expect(budget.take(10, stop.signal)).rejects.toThrow('lost the audience lease');
    expect(budget.used).toBe(0);
  });

  it('with no room at all, runs one table at a time', async () => {
    const budget = new MemoryBudget(0);
    const first = await budget.take(1);
    const second = budget.take(1);
    expect(await settled(second)).toBe(false);
    first();
    (await second)();
    expect(budget.used).toBe(0);
  });

  it('takes for a table made ahead only what fits now, never waiting, and never past a run that waits', async () => {
    const budget = new MemoryBudget(100);
    // Unlike `take`, not even alone does it go past the limit.
    expect(budget.tryTake(101)).toBeUndefined();
    const run = await budget.take(60);
    const ahead = budget.tryTake(40)!;
    expect(budget.used).toBe(100);
    expect(budget.tryTake(1)).toBeUndefined();
    ahead();
    ahead(); // once only
    expect(budget.used).toBe(60);
    // A run waits for 50: a table ahead that would fit in the 40 left does not go before it.
    const waiting = budget.take(50);
    expect(budget.tryTake(10)).toBeUndefined();
    run();
    (await waiting)();
    expect(budget.used).toBe(0);
    // What a table ahead gives back lets in the run that waited for it.
    const held = budget.tryTake(80)!;
    const next = budget.take(30);
    expect(await settled(next)).toBe(false);
    held();
    (await next)();
    expect(budget.used).toBe(0);
  });
});
