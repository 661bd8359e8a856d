// What serves, seen in Chromium: promote a version, send it traffic through
// the gateway, promote the next, and read both versions' lines on the
// deployment's charts with each promotion marked; run a load test from the
// page and watch it live, cancel one, let another finish, compare the two.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { demoCatalog, eventually, mlflowUrl, startSlipway, uniqueName } from './support.mjs';

const registerScript = fileURLToPath(new URL('../../server/tests/fixtures/register_model.py', import.meta.url));
const model = uniqueName('e2e-traffic');
const experiment = uniqueName('e2e-traffic');
let app;

function register(scale) {
  const output = execFileSync('python', [registerScript, mlflowUrl, model, experiment, String(scale)], { encoding: 'utf8' });
  return output.trim().split('\n').pop().trim();
}

before(async () => {
  assert.equal(register(1), '1');
  assert.equal(register(10), '2');
  const dir = mkdtempSync(join(tmpdir(), 'slipway-e2e-catalog-'));
  const catalog = join(dir, 'catalog.toml');
  const demo = readFileSync(demoCatalog, 'utf8')
    .split('\n[[deployment]]')[0]
    .replace('directory = "projects/diabetes"', `directory = "${join(demoCatalog, '..', 'projects', 'diabetes')}"`);
  writeFileSync(catalog, `${demo}\n[[deployment]]\nmodel = "${model}"\ntarget = "local"\n`);
  app = await startSlipway(() => ({ SLIPWAY_CATALOG: catalog, SLIPWAY_RECONCILE_POLL_SECS: '2' }));
});

after(async () => {
  await app?.stop();
});

/** Promotes `version` through its confirm step; the deployment's page once it serves. */
async function promote(version) {
  const page = await app.open(`/deployments/${model}/promote?version=${version}`, { as: 'deployer' });
  await page.getByRole('button', { name: 'Confirm: promote and deploy' }).click();
  await page.waitForURL(new RegExp(`/deployments/${model}\\?done=promoted&version=${version}$`));
  await page.waitForSelector('body[data-hydrated="true"]');
  await page.locator(`[data-serving]:text-is("v${version}")`).waitFor({ timeout: 120_000 });
  await page.locator('.live-status [data-state="Available"]').waitFor({ timeout: 120_000 });
  return page;
}

async function sendTraffic(address, count) {
  for (let i = 0; i < count; i += 1) {
    const response = await fetch(address, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"inputs": [[1.0, 2.0]]}',
    });
    assert.equal(response.status, 200, await response.text());
  }
}

test('both versions\' traffic on the charts, each promotion marked', async () => {
  let page = await promote('1');
  const address = (await page.locator('[data-address]').first().textContent()).trim();
  assert.match(address, new RegExp(`^http://127\\.0\\.0\\.1:\\d+/serve/${model}/invocations$`));
  await sendTraffic(address, 12);
  await page.close();
  page = await promote('2');
  assert.equal((await page.locator('[data-address]').first().textContent()).trim(), address, 'one address for every version');
  await sendTraffic(address, 8);
  // A fresh page at once (the section re-reads itself every 10 s); v2's
  // mark once its history row ends, when v1's server has stopped.
  await eventually(async () => {
    await page.goto(`${app.baseUrl}/deployments/${model}?range=1h#traffic`);
    assert.equal((await page.locator('tr[data-version="2"] [data-requests]').textContent()).trim(), '8');
    const drawn = await page.locator('figure[data-chart="Requests per second"] svg').innerHTML();
    for (const label of ['v1 · promote', 'v2 · promote', 'v1', 'v2']) {
      assert.ok(drawn.includes(label), `the rate chart shows ${label}`);
    }
  }, 30_000);
  assert.equal((await page.locator('tr[data-version="1"] [data-requests]').textContent()).trim(), '12');
  assert.equal(await page.locator('figure[data-chart="Latency"] svg').count(), 1);
  await page.getByRole('link', { name: '24h' }).click();
  await page.waitForURL(/range=24h/);
  await page.locator('nav.ranges a[aria-current="page"]:text-is("24h")').waitFor();
  await page.close();

  const list = await app.open('/deployments');
  const row = list.locator(`tr[data-model="${model}"]`);
  assert.notEqual((await row.locator('[data-rate]').textContent()).trim(), '—');
  await list.close();
});

test('a load test from the page: refused over the caps, watched live, cancelled; another finishes; the two compared', async () => {
  const page = await app.open(`/deployments/${model}`, { as: 'deployer' });
  await page.getByRole('link', { name: 'New load test…' }).click();
  await page.waitForURL(new RegExp(`/deployments/${model}/load-test$`));
  await page.waitForSelector('body[data-hydrated="true"]');
  assert.match(await page.locator('#body').inputValue(), /\S/, 'the version\'s input example by default');

  await page.fill('#users', '5000');
  await page.getByRole('button', { name: 'Start the load test' }).click();
  await page.waitForURL(/load-test\?draft=/);
  assert.match(await page.locator('[data-field="users"] .field-error').textContent(), /at most 50 users/);

  await page.fill('#users', '2');
  await page.fill('#rate', '10');
  await page.fill('#duration_secs', '120');
  await page.fill('#ramp_up_secs', '0');
  await page.getByRole('button', { name: 'Start the load test' }).click();
  await page.waitForURL(new RegExp(`/deployments/${model}/load-tests/[0-9a-f]+$`));
  await page.waitForSelector('body[data-hydrated="true"]');
  const requests = async () => Number((await page.locator('[data-requests]').textContent()).trim());
  // Live: the numbers grow on the page with no reload.
  const first = await eventually(async () => {
    const seen = await requests();
    assert.ok(seen > 0);
    return seen;
  });
  await eventually(async () => assert.ok((await requests()) > first));
  await page.getByRole('button', { name: 'Cancel the test' }).click();
  await page.locator('[data-state="cancelled"]').waitFor({ timeout: 15_000 });
  const cancelled = page.url();

  await page.goto(`${app.baseUrl}/deployments/${model}/load-test`);
  await page.fill('#users', '2');
  await page.fill('#rate', '20');
  await page.fill('#duration_secs', '3');
  await page.fill('#ramp_up_secs', '0');
  await page.getByRole('button', { name: 'Start the load test' }).click();
  await page.waitForURL((url) => url.href !== cancelled && /\/load-tests\/[0-9a-f]+$/.test(url.pathname));
  await page.waitForSelector('body[data-hydrated="true"]');
  await page.locator('[data-state="finished"]').waitFor({ timeout: 30_000 });
  assert.equal((await page.locator('[data-version]').textContent()).trim(), 'v2');

  await page.goto(`${app.baseUrl}/deployments/${model}#load-tests`);
  await page.locator('tr[data-load-test]').nth(1).waitFor();
  await page.getByRole('button', { name: 'Compare' }).click();
  await page.waitForURL(/compare-load-tests\?a=/);
  const before = (await page.locator('tr[data-row="State"] td').nth(0).textContent()).trim();
  const afterState = (await page.locator('tr[data-row="State"] td').nth(1).textContent()).trim();
  assert.deepEqual([before, afterState], ['cancelled', 'finished']);
  assert.equal(await page.locator('tr[data-row="p99"]').count(), 1);
  await page.close();
});
