/**
 * The worker's budget of replica bytes in flight: first come, first served; a request larger
 * than the budget runs alone; giving back twice gives back once.
 */
import { describe, expect, it } from 'vitest';
import { ByteBudget } from '../src/jobs/byte-budget.js';

describe('ByteBudget', () => {
  it('grants in the order asked, lets an oversized request run alone, and counts a double give-back once', async () => {
    const budget = new ByteBudget(100);
    const granted: string[] = [];
    const take = (name: string, bytes: number) => budget.acquire(bytes).then((giveBack) => {
      granted.push(name);
      return giveBack;
    });
    const a = await take('a', 60);
    const b = await take('b', 40);
    const big = take('big', 1000); // waits for everything to be given back
    const c = take('c', 10); // behind big, though it would fit later
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(granted).toEqual(['a', 'b']);
    a();
    a(); // a second give-back of the same grant changes nothing
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(granted).toEqual(['a', 'b']);
    b();
    const giveBackBig = await big;
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(granted).toEqual(['a', 'b', 'big']);
    giveBackBig();
    (await c)();
    expect(granted).toEqual(['a', 'b', 'big', 'c']);
    // Everything is back: the whole budget is free again.
    const whole = await take('whole', 100);
    expect(granted.at(-1)).toBe('whole');
    whole();
  });
});
