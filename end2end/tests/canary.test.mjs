// Canaries on local serving, seen in Chromium: start one at 20 % from the
// deployment's page, see stable and canary side by side as traffic flows,
// step it to 50 %, promote it fully; start another and abort it; start one
// that fails every request with gates and watch its checks abort it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually, mlflowUrl, startSlipway, uniqueName } from './support.mjs';

const registerScript = fileURLToPath(new URL('../../server/tests/fixtures/register_model.py', import.meta.url));
const model = uniqueName('e2e-canary');
const experiment = uniqueName('e2e-canary');
let app;
let sending = true;
let traffic;

function register(scale) {
  const output = execFileSync('python', [registerScript, mlflowUrl, model, experiment, String(scale)], { encoding: 'utf8' });
  return output.trim().split('\n').pop().trim();
}

before(async () => {
  assert.equal(register(1), '1');
  assert.equal(register(2), '2');
  assert.equal(register('fail'), '3');
  const dir = mkdtempSync(join(tmpdir(), 'slipway-e2e-canary-'));
  const catalog = join(dir, 'catalog.toml');
  writeFileSync(catalog, `[[deployment]]\nmodel = "${model}"\ntarget = "local"\n`);
  app = await startSlipway(() => ({ SLIPWAY_CATALOG: catalog, SLIPWAY_RECONCILE_POLL_SECS: '1' }));
});

after(async () => {
  sending = false;
  await traffic;
  await app?.stop();
});

/** Requests as a client sends them, for as long as the tests run. */
async function keepSending(address) {
  while (sending) {
    await fetch(address, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"inputs": [[1.0, 2.0]]}',
    }).then((response) => response.text()).catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const state = (page) => page.locator('[data-canary-state]').first();

async function waitForState(page, wanted, timeout = 180_000) {
  await page.locator(`[data-canary-state="${wanted}"]`).waitFor({ timeout });
}

/** The deployment page after a canary form's redirect, hydrated. */
async function backOnPage(page) {
  await page.waitForURL(new RegExp(`/deployments/${model}(#canary)?$`));
  await page.waitForSelector('body[data-hydrated="true"]');
}

async function fillCanary(page, version, fields = {}) {
  await page.fill('#version', version);
  await page.fill('#weight', '20');
  for (const [field, value] of Object.entries(fields)) {
    await page.fill(`#${field}`, value);
  }
  await page.getByRole('button', { name: 'Start the canary' }).click();
}

async function startCanary(page, version, fields = {}) {
  await fillCanary(page, version, fields);
  await backOnPage(page);
}

test('a canary at 20 %, both sides\' numbers, stepped to 50 %, promoted fully; another aborted', async () => {
  let page = await app.open(`/deployments/${model}/promote?version=1`, { as: 'deployer' });
  await page.getByRole('button', { name: 'Confirm: promote and deploy' }).click();
  await page.waitForURL(new RegExp(`/deployments/${model}\\?done=promoted&version=1$`));
  await page.locator('[data-serving]:text-is("v1")').waitFor({ timeout: 120_000 });
  await page.locator('.live-status [data-state="Available"]').waitFor({ timeout: 120_000 });
  const address = (await page.locator('[data-address]').first().textContent()).trim();
  traffic = keepSending(address);
  assert.equal((await state(page).getAttribute('data-canary-state')), 'none');

  await startCanary(page, '2');
  await waitForState(page, 'progressing', 15_000);
  assert.match(await state(page).textContent(), /v2 takes 20 % of the requests beside v1/);
  // Live: both sides count requests once the canary serves.
  const requests = async (side) => Number((await page.locator(`tr[data-side="${side}"] [data-requests]`).textContent()).trim());
  await eventually(async () => {
    assert.ok((await requests('canary')) > 0, 'the canary answers');
    assert.ok((await requests('stable')) > (await requests('canary')), 'the stable side takes the larger share');
  }, 180_000);
  assert.equal((await page.locator('tr[data-side="canary"] td').first().textContent()).trim(), 'v2');

  await page.fill('#canary-weight', '50');
  await page.getByRole('button', { name: 'Set the share' }).click();
  await backOnPage(page);
  await page.locator('[data-canary-weight="50"]').waitFor({ timeout: 15_000 });

  await page.fill('#canary-promote-reason', 'good numbers at 50 %');
  await page.getByRole('button', { name: 'Promote v2 fully' }).click();
  await backOnPage(page);
  await waitForState(page, 'succeeded');
  assert.match(await state(page).textContent(), /The last canary, v2 beside v1, succeeded: v2 serves all requests/);
  await page.locator('[data-serving]:text-is("v2")').waitFor({ timeout: 60_000 });

  // Another, aborted: a reason is required.
  await page.goto(`${app.baseUrl}/deployments/${model}`);
  await page.waitForSelector('body[data-hydrated="true"]');
  await startCanary(page, '1');
  await waitForState(page, 'progressing', 15_000);
  await page.getByRole('button', { name: 'Abort the canary' }).click();
  await page.waitForURL(/notice=/);
  assert.match(await page.locator('.form-errors').textContent(), /Please say why the canary is aborted/);
  await page.fill('#canary-abort-reason', 'changed my mind');
  await page.getByRole('button', { name: 'Abort the canary' }).click();
  await backOnPage(page);
  await waitForState(page, 'aborted', 15_000);
  assert.match(await state(page).textContent(), /aborted: aborted by deployer: changed my mind/);
  await page.close();
});

test('a canary failing every request is aborted by its checks, the failed checks shown', async () => {
  const page = await app.open(`/deployments/${model}`, { as: 'deployer' });
  // Refused as a whole, with what is wrong.
  await fillCanary(page, '3', { interval_secs: '0', min_success_percent: 'lots' });
  await page.waitForURL(/notice=/);
  assert.match(await page.locator('.form-errors').textContent(), /least success rate is a number/);

  await page.goto(`${app.baseUrl}/deployments/${model}`);
  await page.waitForSelector('body[data-hydrated="true"]');
  await startCanary(page, '3', { interval_secs: '2', min_success_percent: '95', failed_checks_limit: '2' });
  await waitForState(page, 'progressing', 15_000);
  assert.match(await page.locator('[data-canary-analysis]').textContent(), /Checked every 2 s; the share stays as set\. Gates: a success rate of at least 95 %/);
  await waitForState(page, 'aborted');
  assert.match(await state(page).textContent(), /aborted by its analysis after 2 failed checks; the last: success 0\.0 % below 95 %/);
  assert.equal(await page.locator('.canary-checks tr[data-verdict="failed"]').count(), 2);
  // Every request is v2's again.
  assert.equal((await page.locator('[data-serving]').first().textContent()).trim(), 'v2');
  await page.close();
});
