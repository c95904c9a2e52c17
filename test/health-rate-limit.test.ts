// The `health` command makes a monitor pass (queries, a probe of every
// service), and any chat user may ask for it: src/commands/health.ts starts
// one pass at most per interval in a process; a request meanwhile shares the
// pass in flight or gets the last one's findings.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Health, HEALTH_CHECK_INTERVAL_MS } from '../src/commands/health.ts';
import type { Engine } from '../src/engine/engine.ts';
import type { HealthMonitor, HealthReport } from '../src/engine/monitor.ts';

function fakeMonitor() {
  let passes = 0;
  let release: () => void = () => {};
  const report = () => ({ lastPassAt: passes ? `pass ${passes}` : null, totals: { passes } }) as unknown as HealthReport;
  const monitor = {
    check: () =>
      new Promise<HealthReport>((resolve) => {
        release = () => {
          passes++;
          resolve(report());
        };
      }),
    report,
  };
  return { monitor: monitor as unknown as HealthMonitor, passes: () => passes, finish: () => release() };
}

test('health: one pass at most per interval; concurrent requests share it, later ones get its findings', async () => {
  assert.ok(HEALTH_CHECK_INTERVAL_MS >= 5_000 && HEALTH_CHECK_INTERVAL_MS <= 60_000, `${HEALTH_CHECK_INTERVAL_MS} ms`);
  const fake = fakeMonitor();
  let now = 0;
  const health = new Health({} as Engine, fake.monitor, { now: () => now });

  const asked = Array.from({ length: 20 }, () => health.check());
  fake.finish();
  const answers = await Promise.all(asked);
  assert.equal(fake.passes(), 1, 'twenty requests at once, one pass');
  assert.ok(answers.every((a) => a?.lastPassAt === 'pass 1'));

  now += HEALTH_CHECK_INTERVAL_MS - 1;
  for (let i = 0; i < 50; i++) assert.equal((await health.check())?.lastPassAt, 'pass 1');
  assert.equal(fake.passes(), 1, 'within the interval: the last findings, no pass');

  now += 1;
  const next = health.check();
  fake.finish();
  assert.equal((await next)?.lastPassAt, 'pass 2');
  assert.equal(fake.passes(), 2);
});
