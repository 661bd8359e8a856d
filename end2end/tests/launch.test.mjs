// Launching the demo project from the form on the embedded default: a bad
// value is refused inline, a good one launches, the launch page follows the
// status and logs live (and so does the list of launches), and MLflow ends up with the run's params, metrics
// and logged model.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mlflow, mlflowUrl, startSlipway, uniqueName } from './support.mjs';

let app;

before(async () => {
  app = await startSlipway();
});

after(() => app?.stop());

test('launch the demo training from the form and watch it finish', async () => {
  const experiment = uniqueName('e2e-launch');
  const page = await app.open('/launch', { as: 'trainer' });
  await page.getByRole('link', { name: 'main' }).click();
  await page.waitForURL(/entry_point=main/);
  await page.locator('input[name="param.alpha"]').fill('abc');
  await page.locator('input[name="new_experiment"]').fill(experiment);
  await page.locator('input[name="profile"][value="cpu-small"]').check();
  await page.getByRole('button', { name: /^Launch on local/ }).click();

  await page.waitForURL(/\/launch\?draft=[0-9a-f]{32}$/);
  const error = page.locator('[data-field="param.alpha"] .field-error');
  await error.waitFor();
  assert.equal(await error.textContent(), '"abc" is not a number');
  assert.equal(await page.locator('input[name="param.alpha"]').inputValue(), 'abc', 'the value typed is kept');
  assert.equal(await page.locator('input[name="new_experiment"]').inputValue(), experiment);
  const listed = await app.open('/launches', { as: 'trainer' });
  assert.ok(await listed.getByText('Nothing launched yet').isVisible(), 'nothing was launched');
  await listed.close();

  await page.waitForSelector('body[data-hydrated="true"]');
  await page.locator('input[name="param.alpha"]').fill('0.3');
  await page.getByRole('button', { name: /^Launch on local/ }).click();
  await page.waitForURL(/\/launches\/[0-9a-f]{32}$/);
  await page.waitForSelector('body[data-hydrated="true"]');
  // Survives only if the page is never reloaded: the updates are live.
  await page.evaluate(() => { window.slipwayNoReload = true; });
  // The list, opened while the training runs, follows it too.
  const list = await app.open('/launches', { as: 'trainer' });
  await list.evaluate(() => { window.slipwayNoReload = true; });

  await page.locator('.live-status [data-status="succeeded"]').waitFor({ timeout: 120_000 });
  // What a person needs once it ended: why it ended, and where its run is.
  assert.equal(await page.locator('[data-reason]').textContent(), 'exited with code 0');
  assert.match(await page.locator('a[data-run]').getAttribute('href'), /^\/runs\/[0-9a-f]{32}$/);
  const logs = page.locator('#logs');
  await page.waitForFunction(() => document.querySelector('#logs').textContent.includes('logged the model'));
  const logText = await logs.textContent();
  assert.match(logText, /training ElasticNet\(alpha=0\.3, l1_ratio=0\.1\)/);
  assert.match(logText, /metrics: rmse=/);
  assert.equal(await page.evaluate(() => window.slipwayNoReload), true, 'status and logs arrived without a reload');
  assert.equal(await page.getByRole('button', { name: 'Cancel' }).count(), 0, 'nothing to cancel once finished');

  const runId = await page.locator('a[data-run]').getAttribute('data-run');
  const { run } = await (await fetch(`${mlflowUrl}/api/2.0/mlflow/runs/get?run_id=${runId}`)).json();
  assert.equal(run.info.status, 'FINISHED');
  const params = Object.fromEntries(run.data.params.map(({ key, value }) => [key, value]));
  assert.deepEqual(params, { alpha: '0.3', l1_ratio: '0.1' });
  const metrics = run.data.metrics.map(({ key }) => key).sort();
  assert.deepEqual(metrics, ['mae', 'r2', 'rmse']);
  const tags = Object.fromEntries(run.data.tags.map(({ key, value }) => [key, value]));
  assert.equal(tags['mlflow.source.type'], 'PROJECT');
  assert.equal(tags['mlflow.project.entryPoint'], 'main');
  assert.equal(tags['slipway.profile'], 'cpu-small');
  const models = await mlflow('logged-models/search', {
    experiment_ids: [run.info.experiment_id],
    filter: `source_run_id = '${runId}'`,
  });
  assert.equal(models.models?.length, 1, 'one logged model from the run');
  assert.equal(models.models[0].info.name, 'model');

  const row = list.locator('tbody tr').first();
  await row.locator('[data-status="succeeded"]').waitFor();
  assert.match(await row.textContent(), /diabetes · main/);
  assert.equal(await list.evaluate(() => window.slipwayNoReload), true, 'the list updated without a reload');
  await list.close();
  await page.close();
});

test('without JavaScript the form launches, passes other parameters on, and the launch page shows it', async () => {
  const page = await app.open('/launch?project=diabetes&entry_point=main', { as: 'trainer', javaScript: false });
  await page.locator('input[name="param.alpha"]').fill('0.2');
  await page.locator('textarea[name="extra_params"]').fill('note=from a browser without scripts');
  await page.locator('input[name="profile"][value="cpu-small"]').check();
  await page.getByRole('button', { name: /^Launch on local/ }).click();
  await page.waitForURL(/\/launches\/[0-9a-f]{32}$/);
  // No script keeps it live: reload until it has ended.
  const deadline = Date.now() + 120_000;
  let status;
  for (;;) {
    status = await page.locator('[data-status]').first().getAttribute('data-status');
    if (!['submitted', 'pending', 'running'].includes(status) || Date.now() > deadline) break;
    await page.waitForTimeout(1000);
    await page.reload();
  }
  assert.equal(status, 'succeeded');
  const runHref = await page.locator('a[href^="/runs/"]').first().getAttribute('href');
  const runId = runHref.split('/').pop();
  const { run } = await (await fetch(`${mlflowUrl}/api/2.0/mlflow/runs/get?run_id=${runId}`)).json();
  const params = Object.fromEntries(run.data.params.map(({ key, value }) => [key, value]));
  assert.equal(params.alpha, '0.2');
  assert.equal(params.note, 'from a browser without scripts', 'the other parameter is on the run');
  await page.close();
});
