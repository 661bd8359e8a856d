// A new user's walk with a project written the way MLflow's own examples are
// (an MLproject with a conda_env, an entry point without parameters): launch,
// launch again, find the run and its model's files, register two versions,
// promote, promote again, roll back; then the audit log tells the same story
// as the deployment's history.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoCatalog, startSlipway, uniqueName } from './support.mjs';

const project = uniqueName('logistic');
const model = uniqueName('e2e-first-use');
const runName = uniqueName('first-try');
let app;

/** MLflow's sklearn_logistic_regression example, as a user would bring it. */
function writeProject() {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-e2e-project-'));
  writeFileSync(join(dir, 'MLproject'), `name: ${project}\nconda_env: conda.yaml\nentry_points:\n  main:\n    command: "python train.py"\n`);
  writeFileSync(join(dir, 'conda.yaml'), 'name: logistic\nchannels: [conda-forge]\ndependencies: [python=3.11, pip, {pip: [mlflow, scikit-learn]}]\n');
  writeFileSync(join(dir, 'train.py'), [
    'import numpy as np',
    'import mlflow',
    'import mlflow.sklearn',
    'from sklearn.linear_model import LogisticRegression',
    '',
    'X = np.array([-2, -1, 0, 1, 2, 1]).reshape(-1, 1)',
    'y = np.array([0, 0, 1, 1, 1, 0])',
    'lr = LogisticRegression().fit(X, y)',
    'score = lr.score(X, y)',
    'print(f"Score: {score}")',
    'mlflow.log_metric("score", score)',
    'mlflow.sklearn.log_model(lr, name="model")',
    'print("Model saved in run", mlflow.active_run().info.run_id)',
    '',
  ].join('\n'));
  return dir;
}

before(async () => {
  const projectDir = writeProject();
  const catalogDir = mkdtempSync(join(tmpdir(), 'slipway-e2e-catalog-'));
  const catalog = join(catalogDir, 'catalog.toml');
  // The demo's profiles; this project; a local deployment of the model.
  const profiles = readFileSync(demoCatalog, 'utf8').split('\n[[project]]')[0];
  writeFileSync(catalog, `${profiles}\n[[project]]\nname = "${project}"\ndescription = "MLflow's logistic regression example"\ndirectory = "${projectDir}"\n\n`
    + `[[deployment]]\nmodel = "${model}"\ntarget = "local"\n`);
  app = await startSlipway(() => ({ SLIPWAY_CATALOG: catalog, SLIPWAY_RECONCILE_POLL_SECS: '2' }));
});

after(() => app?.stop());

/** Launches from the open form; returns the launch page once it succeeded. */
async function launchAndFinish(page) {
  await page.getByRole('button', { name: /^Launch on local/ }).click();
  await page.waitForURL(/\/launches\/[0-9a-f]{32}$/);
  await page.waitForSelector('body[data-hydrated="true"]');
  await page.locator('.live-status [data-status="succeeded"]').waitFor({ timeout: 120_000 });
  await page.waitForFunction(() => document.querySelector('#logs').textContent.includes('Model saved in run'));
  return page;
}

/** The deployment's history, newest first: [cause, version, before]. */
async function historyRows(page) {
  return page.locator('table.history tbody tr').evaluateAll((rows) => rows.map((row) => {
    const cells = [...row.querySelectorAll('td')].map((cell) => cell.textContent.trim());
    return [row.dataset.cause, cells[1], cells[2]];
  }));
}

test('from a conda project\'s launch to a rollback, each step says what it did', async () => {
  // The default environment is one that runs here, and the form says why.
  const form = await app.open(`/launch?project=${project}`, { as: 'trainer' });
  assert.equal(await form.locator('select[name="env_manager"]').count(), 0, 'no choice that is refused');
  assert.match(await form.locator('[data-env-note]').textContent(), /declares a conda environment \(conda\.yaml\)/);
  assert.match(await form.locator('.launch-form').textContent(), /This entry point takes no parameters/);
  await form.locator('input[name="run_name"]').fill(runName);
  await form.locator('input[name="profile"][value="cpu-small"]').check();
  const first = await launchAndFinish(form);

  // The launch page shows what was launched.
  const facts = first.locator('.launch-facts');
  assert.equal(await facts.locator('[data-env]').textContent(), 'local');
  assert.match(await facts.textContent(), new RegExp(`Run name${runName}`));
  assert.match(await facts.textContent(), /ExperimentExperiment \d+/);
  assert.equal(await first.locator('table.params tbody').textContent(), 'none');
  const firstRun = await first.locator('a[data-run]').getAttribute('data-run');

  // A finished launch opened later: its log, never "Waiting for output…".
  const reopened = await app.open(new URL(first.url()).pathname, { as: 'trainer' });
  await reopened.waitForFunction(() => document.querySelector('#logs').textContent.includes('Model saved in run'));
  await reopened.close();

  // Launch again with the same choices: it runs as the first did.
  const again = first.getByRole('link', { name: 'Launch again with these values' });
  const relaunch = new URL(await again.getAttribute('href'), app.baseUrl);
  assert.equal(relaunch.searchParams.get('env_manager'), 'local');
  assert.equal(relaunch.searchParams.get('run_name'), runName);
  assert.match(relaunch.searchParams.get('experiment'), /^\d+$/);
  await again.click();
  await first.waitForURL(/\/launch\?/);
  await first.waitForSelector('body[data-hydrated="true"]');
  assert.equal(await first.locator('input[name="run_name"]').inputValue(), runName);
  const second = await launchAndFinish(first);
  assert.equal(await second.locator('[data-env]').textContent(), 'local');
  const secondRun = await second.locator('a[data-run]').getAttribute('data-run');
  assert.notEqual(secondRun, firstRun);
  await second.close();

  // The run page: who ran it, in what, and the logged model's files.
  const run = await app.open(`/runs/${firstRun}`, { as: 'trainer' });
  const runFacts = await run.locator('dl.facts').textContent();
  assert.match(runFacts, /Usertrainer/);
  assert.match(runFacts, new RegExp(`Project${project} · main`));
  assert.match(runFacts, /Environmentlocal/);
  await run.locator('figure.chart[data-metric="score"] .single-value').waitFor();
  assert.equal(await run.locator('nav.switch').count(), 0, 'no chart switches for a single value');
  const loggedModel = run.locator('dl.facts dd.mono a').first();
  assert.match(await loggedModel.getAttribute('href'), /\?model=m-[0-9a-f]+#artifacts$/);
  await loggedModel.click();
  await run.getByRole('link', { name: 'MLmodel' }).click();
  await run.locator('h1', { hasText: 'MLmodel' }).waitFor();
  assert.match(await run.locator('nav.crumbs').textContent(), /^Logged model m-[0-9a-f]+'s files$/);
  await run.close();

  // Two versions, registered from the runs' pages.
  for (const [runId, version] of [[firstRun, '1'], [secondRun, '2']]) {
    const page = await app.open(`/runs/${runId}`, { as: 'trainer', javaScript: false });
    await page.locator('#register-model').fill(model);
    await page.getByRole('button', { name: 'Register model' }).click();
    await page.waitForURL(new RegExp(`/models/${model}/versions/${version}$`));
    await page.close();
  }

  // The stage a deployment serves is not offered by hand: Promote is.
  const versionPage = await app.open(`/models/${model}/versions/1`, { as: 'admin' });
  const stages = await versionPage.locator('select#stage option').evaluateAll((options) => options.map((option) => option.value));
  assert.deepEqual(stages, ['None', 'Staging', 'Archived']);
  await versionPage.locator('[data-stage-bound]').getByRole('link', { name: 'promote this version' }).click();
  await versionPage.getByRole('heading', { name: `Promote ${model} v1 to production?` }).waitFor();
  await versionPage.locator('textarea[name="reason"]').fill('first model');
  await versionPage.getByRole('button', { name: 'Confirm: promote and deploy' }).click();
  await versionPage.waitForURL(new RegExp(`/deployments/${model}\\?done=promoted&version=1$`));
  await versionPage.waitForSelector('body[data-hydrated="true"]');
  assert.match(await versionPage.locator('[data-done]').textContent(), /^v1 is Production in MLflow now\. Slipway is deploying it/);
  const deployment = versionPage;
  await deployment.locator('[data-serving]:text-is("v1")').waitFor({ timeout: 120_000 });

  // The second version: the history and the live versions follow without a reload.
  await deployment.evaluate(() => { window.slipwayNoReload = true; });
  const promoting = await app.open(`/deployments/${model}/promote?version=2`, { as: 'deployer' });
  await promoting.locator('textarea[name="reason"]').fill('second model');
  await promoting.getByRole('button', { name: 'Confirm: promote and deploy' }).click();
  await promoting.waitForURL(new RegExp(`/deployments/${model}\\?done=promoted&version=2$`));
  await promoting.close();
  await deployment.locator('[data-serving]:text-is("v2")').waitFor({ timeout: 120_000 });
  await deployment.locator('table.live-versions tbody tr:first-child td:first-child:text-is("v2")').waitFor();
  await deployment.locator('table.history tbody tr:first-child [data-outcome="serving"]').waitFor();
  assert.deepEqual((await historyRows(deployment)).slice(0, 2), [['promote', 'v2', 'v1'], ['promote', 'v1', '—']]);
  assert.equal(await deployment.evaluate(() => window.slipwayNoReload), true, 'history and live versions updated in place');

  // Roll back: a confirm step, a reason, then a notice.
  await deployment.getByRole('link', { name: 'Roll back to the previous version…' }).click();
  await deployment.getByRole('heading', { name: `Roll back ${model} to v1?` }).waitFor();
  await deployment.locator('textarea[name="reason"]').fill('v2 scores worse');
  await deployment.getByRole('button', { name: 'Confirm: roll back to v1' }).click();
  await deployment.waitForURL(new RegExp(`/deployments/${model}\\?done=rolled-back&version=1$`));
  await deployment.waitForSelector('body[data-hydrated="true"]');
  assert.match(await deployment.locator('[data-done]').textContent(), /^Rolled back: v1 is Production in MLflow again/);
  await deployment.locator('[data-serving]:text-is("v1")').waitFor({ timeout: 120_000 });
  await deployment.locator('table.history tbody tr:first-child [data-outcome="serving"]').waitFor({ timeout: 120_000 });
  const history = await historyRows(deployment);
  assert.deepEqual(history, [['rollback', 'v1', 'v2'], ['promote', 'v2', 'v1'], ['promote', 'v1', '—']]);
  await deployment.close();

  // The audit log: every kind it holds can be filtered for, and it tells
  // the history's story, with the reasons given.
  const audit = await app.open(`/audit?model=${model}`, { as: 'admin' });
  const offered = await audit.locator('select[name="action"] option').evaluateAll((options) => options.map((option) => option.value));
  const everything = await audit.evaluate(async () => (await fetch('/audit.json')).json());
  for (const action of new Set(everything.map((entry) => entry.action))) {
    assert.ok(offered.includes(action), `the filter offers ${action}`);
  }
  for (const action of ['registry-register', 'deployment-settings', 'promote', 'rollback', 'launch']) {
    assert.ok(offered.includes(action), `the filter offers ${action}`);
  }
  const changes = await audit.evaluate(async (name) => (await fetch(`/audit.json?model=${encodeURIComponent(name)}`)).json(), model);
  const story = changes
    .filter((entry) => ['promote', 'rollback'].includes(entry.action))
    .map((entry) => [entry.action, entry.detail, entry.outcome]);
  assert.deepEqual(story, [
    ['rollback', 'v2 → v1: v2 scores worse', 'done'],
    ['promote', 'v1 → v2: second model', 'done'],
    ['promote', 'nothing → v1: first model', 'done'],
  ]);
  assert.deepEqual(
    history.map(([cause, version, previous]) => [cause, `${previous === '—' ? 'nothing' : previous} → ${version}`]),
    story.map(([action, detail]) => [action, detail.split(':')[0]]),
    'history and audit agree',
  );
  const launches = await audit.evaluate(async () => (await fetch('/audit.json?actor=trainer&action=launch')).json());
  assert.ok(launches.length >= 2);
  for (const entry of launches.slice(0, 2)) {
    assert.equal(entry.outcome, 'done: succeeded', 'a launch\'s entry says how the training ended');
  }
  await audit.close();
});
