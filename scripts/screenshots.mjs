// `npm run screenshots`: the console's pages on the demo's data, saved under docs/ for the README.
// Runs the demo first when it has not run (its Redis keeps the state in .audience-sync/redis), serves the
// example config on a free port, logs in as the demo user in Debian's Chromium, and shoots each page.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const say = (text) => process.stderr.write(`screenshots: ${text}\n`);
const { demoRedis } = await import(path.join(root, 'dist/app/local/demo-redis.js'));
const { startApi } = await import(path.join(root, 'dist/src/api/server.js'));
const { createLogger } = await import(path.join(root, 'dist/src/log.js'));

/** Each page as a campaign manager reaches it: its file under docs/, its address, what to wait for. */
const PAGES = [
  { file: 'console-overview.png', path: '/', ready: 'Movement between segments' },
  { file: 'console-segment.png', path: '/segments/At%20Risk', ready: 'Where its customers' },
  {
    file: 'console-audience.png',
    path: '/destinations/local/audiences/RFM%3A%20Champions',
    ready: 'Size and match rate over time',
  },
  { file: 'console-runs.png', path: '/runs', ready: 'Runs' },
  { file: 'console-queues.png', path: '/admin/queues', ready: 'sync' },
];

const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  say(`no Chromium at ${executablePath}: apt-get install chromium, or set CHROMIUM to its path`);
  process.exit(1);
}
if (!existsSync(path.join(root, '.audience-sync', 'redis'))) {
  say('no demo data yet: running `npm run demo` first');
  const demo = spawnSync(process.execPath, [path.join(root, 'dist/app/local/demo.js')], { stdio: 'inherit' });
  if (demo.status !== 0) process.exit(demo.status ?? 1);
}
const stopRedis = await demoRedis(root, say);
const api = await startApi({
  configFile: path.join(root, 'config', 'example.yaml'),
  log: createLogger({ level: 'warn' }),
  port: 0,
});
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
const out = path.join(root, 'docs');
mkdirSync(out, { recursive: true });
let failed = 0;
try {
  // Reduced motion: the charts draw without animating, so each picture shows them whole.
  const page = await browser.newPage({
    viewport: { width: 1280, height: 900 },
    deviceScaleFactor: 1,
    reducedMotion: 'reduce',
  });
  const problems = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`${api.url}/login`);
  await page.getByLabel('User name').fill('demo');
  await page.getByLabel('Password').fill('demo-password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL((url) => !url.pathname.startsWith('/login'));
  for (const shot of PAGES) {
    const response = await page.goto(`${api.url}${shot.path}`);
    if (!response?.ok()) {
      say(`${shot.path}: ${response?.status()} (no such page yet): skipped`);
      continue;
    }
    try {
      await page.getByText(shot.ready).first().waitFor({ timeout: 30_000 });
      // Charts draw on the next frames; the page says it is done when no request is pending.
      await page.waitForLoadState('networkidle');
      await page.screenshot({ path: path.join(out, shot.file), fullPage: true });
      say(`docs/${shot.file}`);
    } catch (error) {
      failed++;
      say(`${shot.path}: ${error.message.split('\n')[0]}`);
    }
  }
  if (problems.length) say(`console errors: ${problems.join('; ')}`);
} finally {
  await browser.close();
  await api.close();
  await stopRedis?.();
}
process.exit(failed ? 1 : 0);
