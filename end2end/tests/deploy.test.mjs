// Promotion on the embedded default, in Chromium: promote from a version's
// page through the confirm step, watch it serve, ask it for a prediction,
// promote the next version, roll back; a stage set with MLflow's own Python
// client is picked up by the poll, an alias by the webhook.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { demoCatalog, eventually, mlflowUrl, startSlipway, uniqueName } from './support.mjs';

const registerScript = fileURLToPath(new URL('../../server/tests/fixtures/register_model.py', import.meta.url));
const byStage = uniqueName('e2e-staged');
const byAlias = uniqueName('e2e-aliased');
const guarded = uniqueName('e2e-guarded');
const made = uniqueName('e2e-made');
const registered = uniqueName('e2e-registered');
const experiment = uniqueName('e2e-deploy');
let app;
let hooked;

/** A new version of a real scikit-learn model; predicts (x1 + x2) * scale. */
function register(model, scale) {
  const output = execFileSync('python', [registerScript, mlflowUrl, model, experiment, String(scale)], { encoding: 'utf8' });
  return output.trim().split('\n').pop().trim();
}

function python(code) {
  execFileSync('python', ['-c', code], { env: { ...process.env, MLFLOW_TRACKING_URI: mlflowUrl }, stdio: 'ignore' });
}

function catalogWith(bindings) {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-e2e-catalog-'));
  const path = join(dir, 'catalog.toml');
  // The demo's profiles and project stay (relative paths from its directory).
  const demo = readFileSync(demoCatalog, 'utf8')
    .split('\n[[deployment]]')[0]
    .replace('directory = "projects/diabetes"', `directory = "${join(demoCatalog, '..', 'projects', 'diabetes')}"`);
  writeFileSync(path, `${demo}\n${bindings}`);
  return path;
}

before(async () => {
  assert.equal(register(byStage, 1), '1');
  assert.equal(register(byStage, 10), '2');
  assert.equal(register(byAlias, 100), '1');
  assert.equal(register(guarded, 1), '1');
  assert.equal(register(guarded, 10), '2');
  assert.equal(register(made, 1), '1');
  app = await startSlipway(() => ({
    SLIPWAY_CATALOG: catalogWith(
      `[[deployment]]\nmodel = "${byStage}"\ntarget = "local"\n\n`
      + `[[deployment]]\nmodel = "${guarded}"\ntarget = "local"\nrequires_approval = true\n\n`
      + `[[deployment]]\nmodel = "${registered}"\ntarget = "local"\n`,
    ),
    SLIPWAY_RECONCILE_POLL_SECS: '2',
  }));
  // A second Slipway that only webhooks can wake: its poll is an hour.
  hooked = await startSlipway((baseUrl) => ({
    SLIPWAY_CATALOG: catalogWith(`[[deployment]]\nmodel = "${byAlias}"\ntarget = "local"\nproduction = "alias"\n`),
    SLIPWAY_RECONCILE_POLL_SECS: '3600',
    SLIPWAY_PUBLIC_URL: baseUrl,
    SLIPWAY_WEBHOOK_SECRET: 'an-e2e-webhook-secret-long-enough',
  }));
});

after(async () => {
  await app?.stop();
  await hooked?.stop();
});

async function promoteFromVersionPage(version, model = byStage) {
  const page = await app.open(`/models/${model}/versions/${version}`, { as: 'deployer' });
  await page.getByRole('link', { name: 'Promote to production…' }).click();
  await page.getByRole('heading', { name: `Promote ${model} v${version} to production?` }).waitFor();
  assert.match(page.url(), new RegExp(`/deployments/${model}/promote\\?version=${version}$`));
  assert.ok(await page.locator('table.confirm').getByText('scale').isVisible(), 'key metrics side by side');
  await page.getByRole('button', { name: 'Confirm: promote and deploy' }).click();
  await page.locator('section.try-it').waitFor();
  await page.waitForSelector('body[data-hydrated="true"]');
  assert.match(page.url(), new RegExp(`/deployments/${model}\\?done=promoted&version=${version}$`));
  assert.match(await page.locator('[data-done="promoted"]').textContent(), new RegExp(`^v${version} is Production in MLflow now`));
  return page;
}

async function servingVersion(page, version) {
  // The page re-reads the deployment every second: no reload.
  await page.locator(`[data-serving]:text-is("v${version}")`).waitFor({ timeout: 120_000 });
  await page.locator('.live-status [data-state="Available"]').waitFor({ timeout: 120_000 });
}

/** Try it is a POST form: the answer comes back on a page of its own (`?answer=`). */
async function tryIt(page) {
  const earlier = new URL(page.url()).searchParams.get('answer');
  await page.locator('textarea[name="input"]').fill('{"inputs": [[1.0, 2.0]]}');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.waitForURL((url) => ![null, earlier].includes(url.searchParams.get('answer')));
  assert.equal(await page.locator('textarea[name="input"]').inputValue(), '{"inputs": [[1.0, 2.0]]}', 'the body is kept');
  const answer = page.locator('.prediction pre');
  await answer.waitFor({ timeout: 30_000 });
  assert.equal(await page.locator('.prediction').getAttribute('data-status'), '200');
  const { predictions } = JSON.parse(await answer.textContent());
  return Math.round(predictions[0] * 1000) / 1000;
}

test('promote, predict, promote again, roll back, and follow changes made in MLflow', async () => {
  let page = await promoteFromVersionPage('1');
  await servingVersion(page, '1');
  assert.equal(await tryIt(page), 3, 'v1 answers (1 + 2) × 1');
  await page.close();

  page = await promoteFromVersionPage('2');
  await servingVersion(page, '2');
  assert.equal(await tryIt(page), 30, 'v2 answers (1 + 2) × 10');

  await page.getByRole('link', { name: 'Roll back to the previous version…' }).click();
  await page.getByRole('heading', { name: `Roll back ${byStage} to v1?` }).waitFor();
  await page.getByRole('button', { name: 'Confirm: roll back to v1' }).click();
  await page.waitForURL(new RegExp(`/deployments/${byStage}\\?done=rolled-back&version=1$`));
  await page.waitForSelector('body[data-hydrated="true"]');
  await servingVersion(page, '1');
  assert.equal(await tryIt(page), 3, 'rolled back to v1');
  const causes = await page.locator('table.history tbody tr').evaluateAll((rows) => rows.map((row) => row.dataset.cause));
  assert.deepEqual(causes, ['rollback', 'promote', 'promote']);

  // MLflow's own Python client moves the stage: no webhook exists for that; the poll finds it.
  python(`from mlflow import MlflowClient; MlflowClient().transition_model_version_stage("${byStage}", "2", "Production", archive_existing_versions=True)`);
  await servingVersion(page, '2');
  await eventually(async () => {
    const latest = await page.locator('table.history tbody tr').first().getAttribute('data-cause');
    assert.equal(latest, 'poll');
  });
  await page.close();
});

test('a trainer registers a run\'s model and sets and removes an alias without JavaScript; it is promoted and serves', async () => {
  // "-": logged, not registered; the script prints the run's id.
  const runId = register('-', 1);
  const page = await app.open(`/runs/${runId}`, { as: 'trainer', javaScript: false });
  await page.locator('#register-model').fill(registered);
  await page.getByRole('button', { name: 'Register model' }).click();
  await page.waitForURL(new RegExp(`/models/${registered}/versions/1$`));
  assert.match(await page.locator('table.signature').textContent(), /tensor float64/, 'its signature');

  await page.getByLabel('Alias').fill('challenger');
  await page.getByRole('button', { name: 'Set alias on this version' }).click();
  await page.waitForURL(new RegExp(`/models/${registered}/versions/1$`));
  assert.equal(await page.locator('dl.facts .alias').textContent(), '@challenger');
  await page.getByRole('button', { name: 'Remove @challenger' }).click();
  await page.waitForURL(new RegExp(`/models/${registered}/versions/1$`));
  assert.equal(await page.locator('dl.facts .alias').count(), 0, 'the alias is gone');
  assert.equal(await page.getByRole('link', { name: 'Promote to production…' }).count(), 0, 'a trainer does not promote');
  await page.close();

  // Promoted without JavaScript too: links and plain forms.
  const promoting = await app.open(`/models/${registered}/versions/1`, { as: 'deployer', javaScript: false });
  await promoting.getByRole('link', { name: 'Promote to production…' }).click();
  await promoting.getByRole('button', { name: 'Confirm: promote and deploy' }).click();
  await promoting.waitForURL(new RegExp(`/deployments/${registered}\\?done=promoted&version=1$`));
  await promoting.close();
  const deployment = await app.open(`/deployments/${registered}`, { as: 'deployer' });
  await servingVersion(deployment, '1');
  assert.equal(await tryIt(deployment), 3, 'the registered model answers');
  await deployment.close();
});

test('an alias set with MLflow\'s client arrives by webhook and is served', async () => {
  const page = await hooked.open(`/deployments/${byAlias}`, { as: 'deployer' });
  assert.equal(await page.locator('[data-serving]').textContent(), '—');
  // MLflow caches its webhook list for up to a minute, so a delivery can go
  // to an earlier registration: set the alias again until one arrives. The
  // poll of this Slipway is an hour; only a webhook can have woken it.
  const served = page.locator('[data-serving]:text-is("v1")');
  for (let attempt = 0; attempt < 15 && !(await served.isVisible()); attempt += 1) {
    python(`from mlflow import MlflowClient; MlflowClient().set_registered_model_alias("${byAlias}", "production", "1")`);
    await served.waitFor({ timeout: 10_000 }).catch(() => {});
  }
  await page.locator('.live-status [data-state="Available"]').waitFor({ timeout: 120_000 });
  assert.equal(await page.locator('table.history tbody tr').first().getAttribute('data-cause'), 'webhook');
  await page.close();
});

/** A deployer asks from the version's page; returns the request's page. */
async function requestPromotion(version, reason) {
  const page = await app.open(`/models/${guarded}/versions/${version}`, { as: 'deployer' });
  await page.getByRole('link', { name: 'Promote to production…' }).click();
  await page.getByRole('heading', { name: `Promote ${guarded} v${version} to production?` }).waitFor();
  assert.ok(await page.locator('table.evidence').getByText('scale').first().isVisible(), 'the evidence');
  await page.locator('textarea[name="reason"]').fill(reason);
  await page.getByRole('button', { name: 'Request approval' }).click();
  await page.waitForURL(/\/approvals\/[0-9a-f]+$/);
  await page.waitForSelector('body[data-hydrated="true"]');
  return page;
}

async function stageOf(version) {
  const response = await fetch(`${mlflowUrl}/api/2.0/mlflow/model-versions/get?name=${guarded}&version=${version}`);
  return (await response.json()).model_version.current_stage;
}

test('four eyes: a deployer asks, cannot approve; an approver approves and it serves; a rejection changes nothing', async () => {
  const asked = await requestPromotion('1', 'first release');
  const requestPath = new URL(asked.url()).pathname;
  assert.equal(await asked.locator('[data-request-state]').first().textContent(), 'pending');
  assert.equal(await asked.getByRole('button', { name: 'Approve and deploy' }).count(), 0, 'no approve button for the requester');
  assert.equal(
    await asked.locator('[data-not-allowed]').textContent(),
    'You asked for this promotion; someone else has to approve it.',
  );
  assert.equal(await stageOf('1'), 'None', 'asking changed nothing in MLflow');
  await asked.close();

  const review = await app.open('/approvals', { as: 'approver' });
  await review.locator(`a[href="${requestPath}"]`).click();
  await review.getByRole('heading', { name: `Promote ${guarded} v1?` }).waitFor();
  assert.equal(await review.locator('[data-requested-by]').textContent(), 'deployer');
  await review.locator('textarea[name="comment"]').fill('metrics look fine');
  await review.getByRole('button', { name: 'Approve and deploy' }).click();
  await review.locator('[data-request-state="approved"]').first().waitFor();
  assert.equal(await review.locator('[data-decided-by]').textContent(), 'approver');
  await review.close();

  const deployment = await app.open(`/deployments/${guarded}`, { as: 'approver' });
  await deployment.locator('[data-serving]:text-is("v1")').waitFor({ timeout: 120_000 });
  await deployment.locator('.live-status [data-state="Available"]').waitFor({ timeout: 120_000 });
  assert.equal(await tryIt(deployment), 3, 'the approved version answers');
  await deployment.close();

  const second = await requestPromotion('2', 'bigger scale');
  const secondPath = new URL(second.url()).pathname;
  await second.close();
  const rejecting = await app.open(secondPath, { as: 'approver' });
  await rejecting.locator('textarea[name="comment"]').fill('not this quarter');
  await rejecting.getByRole('button', { name: 'Reject' }).click();
  await rejecting.locator('[data-request-state="rejected"]').first().waitFor();
  await rejecting.close();
  assert.equal(await stageOf('2'), 'None', 'a rejected request changes nothing in MLflow');
  assert.equal(await stageOf('1'), 'Production');
  const still = await app.open(`/deployments/${guarded}`, { as: 'viewer' });
  assert.equal(await still.locator('[data-serving]').textContent(), 'v1');
  assert.equal(await still.getByRole('link', { name: 'Roll back to the previous version…' }).count(), 0, 'a viewer cannot roll back');
  await still.close();
});

test('where approval is required, a canary is asked for with a reason and starts once an approver approves it', async () => {
  const page = await app.open(`/deployments/${guarded}`, { as: 'deployer' });
  await page.fill('#version', '2');
  await page.fill('#weight', '20');
  await page.getByRole('button', { name: 'Ask to start the canary' }).click();
  await page.waitForURL(/notice=/);
  assert.match(await page.locator('.form-errors').textContent(), /say why this version should take real requests/);
  await page.fill('#version', '2');
  await page.fill('#weight', '20');
  await page.fill('#canary-reason', 'a fifth of the traffic first');
  await page.getByRole('button', { name: 'Ask to start the canary' }).click();
  await page.waitForURL(/\/approvals\/[0-9a-f]+$/);
  await page.getByRole('heading', { name: `Start ${guarded} v2 as a canary at 20 %?` }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Approve and start' }).count(), 0, 'no approve button for the requester');
  const requestPath = new URL(page.url()).pathname;
  await page.close();

  const review = await app.open(requestPath, { as: 'approver' });
  assert.match(await review.locator('[data-rollout-asked]').textContent(), /v2 answers 20 % of the requests/);
  await review.getByRole('button', { name: 'Approve and start' }).click();
  await review.locator('[data-request-state="approved"]').first().waitFor();
  await review.close();

  const deployment = await app.open(`/deployments/${guarded}`, { as: 'deployer' });
  await deployment.locator('[data-canary-state="progressing"]').waitFor({ timeout: 15_000 });
  assert.match(
    await deployment.locator('[data-canary-state]').first().textContent(),
    /v2 takes 20 % of the requests beside v1; started by deployer \(approved by approver\)/,
  );
  await deployment.fill('#canary-abort-reason', 'seen it start');
  await deployment.getByRole('button', { name: 'Abort the canary' }).click();
  await deployment.locator('[data-canary-state="aborted"]').waitFor({ timeout: 15_000 });
  await deployment.close();
});

test('an admin creates a deployment in the app, it serves, is changed, and once deleted its model server is gone', async () => {
  // Nothing serves it yet: its version page offers a deployment, not a promotion.
  const list = await app.open(`/models/${made}/versions/1`, { as: 'admin' });
  assert.equal(await list.getByRole('link', { name: 'Promote to production…' }).count(), 0);
  await list.getByRole('link', { name: 'Create a deployment…' }).click();
  await list.getByRole('heading', { name: 'New deployment' }).waitFor();
  assert.equal(await list.locator('input[name="model"]').inputValue(), made, 'the model is filled in');
  await list.locator('input[name="replicas"]').fill('-1');
  await list.getByRole('button', { name: 'Create deployment' }).click();
  // Sent back with what is wrong, the values kept (on the server, not in the URL).
  await list.locator('.form-errors li').first().waitFor();
  assert.match(await list.locator('.form-errors').textContent(), /replicas must not be negative/);
  assert.match(list.url(), /\/new-deployment\?draft=[0-9a-f]+$/);
  assert.equal(await list.locator('input[name="model"]').inputValue(), made);
  await list.locator('input[name="replicas"]').fill('1');
  await list.getByRole('button', { name: 'Create deployment' }).click();
  await list.waitForURL(new RegExp(`/deployments/${made}$`));
  await list.close();

  let page = await promoteFromVersionPage('1', made);
  await servingVersion(page, '1');
  assert.equal(await tryIt(page), 3, 'the new deployment serves v1');
  // The gateway's address; the model server's own is in the history.
  const address = await page.locator('[data-address]').textContent();
  const readyCell = page.locator('table.history td.description', { hasText: 'ready on' }).first();
  await readyCell.waitFor();
  const ready = await readyCell.textContent();
  const modelServer = ready.match(/ready on (http:\/\/127\.0\.0\.1:\d+)\/invocations/)[1];
  await page.close();

  page = await app.open(`/deployments/${made}`, { as: 'admin' });
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.getByRole('heading', { name: `Deployment of ${made}` }).waitFor();
  await page.getByLabel('Promotions need an approver (four eyes)').check();
  await page.getByRole('button', { name: 'Save changes' }).click();
  await page.waitForURL(new RegExp(`/deployments/${made}$`));
  const latest = page.locator('table.history tbody tr').first();
  assert.equal(await latest.getAttribute('data-cause'), 'settings');
  assert.equal(await latest.locator('td.description').textContent(), 'requires approval no → yes');
  const asking = await app.open(`/deployments/${made}/promote?version=1`, { as: 'deployer' });
  assert.equal(await asking.getByRole('button', { name: 'Request approval' }).count(), 1, 'the change applies at once');
  await asking.close();

  await page.getByRole('link', { name: 'Settings' }).click();
  await page.getByLabel(`Type ${made} to confirm`).fill('not the name');
  await page.getByRole('button', { name: 'Delete deployment' }).click();
  await page.locator('p.form-errors').waitFor();
  assert.match(await page.locator('p.form-errors').textContent(), /nothing was deleted/);
  await page.getByLabel(`Type ${made} to confirm`).fill(made);
  await page.getByRole('button', { name: 'Delete deployment' }).click();
  await page.waitForURL(/\/deployments$/);
  assert.equal(await page.locator(`tr[data-model="${made}"]`).count(), 0);
  assert.equal(await page.getByRole('link', { name: 'New deployment' }).count(), 1, 'offered to an admin');
  await eventually(async () => {
    await assert.rejects(fetch(`${modelServer}/ping`), 'the model server is gone');
  }, 30_000);
  const unserved = await fetch(address, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(unserved.status, 503, 'the gateway says nothing serves it');
  assert.match(await unserved.text(), new RegExp(`No deployment named ${made} is served here`));
  const refused = await app.open('/new-deployment', { as: 'deployer' });
  assert.match(await refused.locator('[data-not-allowed]').textContent(), /needs the admin role/);
  assert.equal(await refused.getByRole('button', { name: 'Create deployment' }).count(), 0);
  await refused.close();
  const gone = await app.open(`/deployments/${made}`, { as: 'viewer' });
  assert.match(await gone.locator('body').textContent(), /has no deployment/);
  await gone.close();
  await page.close();
});
