// Single sign-on through a real OpenID Connect provider process
// (oidc-provider-mock): a user whose group maps to `approver` signs in and
// lands where they wanted to go with that role; a user whose groups map to
// nothing is turned away.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { freePort, startSlipway } from './support.mjs';

let provider;
let issuer;
let app;

let port;

/** The provider, started afresh: with signing keys of its own. */
async function startProvider() {
  provider = spawn('oidc-provider-mock', ['-p', String(port)], { stdio: 'ignore' });
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`${issuer}/.well-known/openid-configuration`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('oidc-provider-mock did not start');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

before(async () => {
  port = await freePort();
  issuer = `http://127.0.0.1:${port}`;
  await startProvider();
  for (const [sub, groups] of [['alice', ['ml-approvers', 'staff']], ['bob', ['staff']]]) {
    await setUser(sub, sub, groups);
  }
  // Two people the provider calls "carol": the same name, other subjects.
  await setUser('u-1001', 'carol', ['ml-approvers']);
  await setUser('u-2002', 'carol', ['ml-approvers']);
  app = await startSlipway((baseUrl) => ({
    SLIPWAY_EXTERNAL_URL: baseUrl,
    SLIPWAY_OIDC_ISSUER: issuer,
    SLIPWAY_OIDC_CLIENT_ID: 'slipway',
    SLIPWAY_OIDC_CLIENT_SECRET: 'a-client-secret',
    SLIPWAY_OIDC_ROLE_MAP: 'ml-approvers=approver;platform=admin',
  }));
});

after(async () => {
  await app?.stop();
  provider?.kill('SIGTERM');
});

async function setUser(sub, name, groups) {
  const response = await fetch(`${issuer}/users/${sub}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ preferred_username: name, groups }),
  });
  assert.equal(response.status, 204);
}

async function signInAt(page, sub) {
  await page.goto(`${app.baseUrl}/login?next=${encodeURIComponent('/approvals')}`);
  await page.getByRole('link', { name: 'Sign in with 127.0.0.1' }).click();
  await page.waitForURL(`${issuer}/oauth2/authorize?**`);
  await page.fill('input[name="sub"]', sub);
  await Promise.all([page.waitForURL(`${app.baseUrl}/**`), page.getByRole('button', { name: 'Authorize' }).click()]);
}

test('single sign-on: a group mapped to approver signs in with that role', async () => {
  const context = await app.browser.newContext();
  const page = await context.newPage();
  await signInAt(page, 'alice');
  assert.equal(new URL(page.url()).pathname, '/approvals', 'back where the sign-in started');
  const who = page.locator('.who [data-user]');
  assert.equal(await who.textContent(), 'alice');
  assert.equal(await who.getAttribute('title'), 'approver');
  await page.goto(`${app.baseUrl}/launch`);
  assert.equal(await page.locator('form.launch-form').count(), 1, 'an approver may launch');
  await context.close();
});

test('single sign-on: groups that map to no role are turned away', async () => {
  const context = await app.browser.newContext();
  const page = await context.newPage();
  await signInAt(page, 'bob');
  const url = new URL(page.url());
  assert.equal(`${url.pathname}${url.search}`, '/login?error=sso');
  assert.equal(await page.locator('[role="alert"]').textContent(), 'Single sign-on failed; the server log says why.');
  assert.equal((await context.cookies()).filter((cookie) => cookie.name === 'slipway_session').length, 0);
  await context.close();
});

test('single sign-on: the person is the provider\'s subject, never the name it calls them', async () => {
  const who = (page) => page.locator('.who [data-user]').textContent();
  const first = await app.browser.newContext();
  const carol = await first.newPage();
  await signInAt(carol, 'u-1001');
  assert.equal(await who(carol), 'carol');

  // Renamed at the provider: the same account, not a second one.
  await setUser('u-1001', 'carol-renamed', ['ml-approvers']);
  const renamed = await app.browser.newContext();
  const again = await renamed.newPage();
  await signInAt(again, 'u-1001');
  assert.equal(await who(again), 'carol');
  await renamed.close();

  // Another person with the name claim "carol" is not carol.
  const other = await app.browser.newContext();
  const impostor = await other.newPage();
  await signInAt(impostor, 'u-2002');
  const url = new URL(impostor.url());
  assert.equal(`${url.pathname}${url.search}`, '/login?error=sso');
  assert.equal((await other.cookies()).filter((cookie) => cookie.name === 'slipway_session').length, 0);
  assert.match(app.log(), /the name carol belongs to another person's single sign-on account/);
  await other.close();

  // The provider takes carol's groups away: her next sign-in is refused,
  // and the session she still has open ends with it.
  await setUser('u-1001', 'carol', ['staff']);
  const later = await app.browser.newContext();
  await signInAt(await later.newPage(), 'u-1001');
  await later.close();
  await carol.goto(`${app.baseUrl}/approvals`);
  assert.equal(new URL(carol.url()).pathname, '/login', 'the open session ended');
  await first.close();
});

test('single sign-on: after the provider rotates its signing keys, sign-in works without a restart', async () => {
  const stopped = new Promise((resolve) => provider.once('exit', resolve));
  provider.kill('SIGTERM');
  await stopped;
  await startProvider();
  await setUser('alice', 'alice', ['ml-approvers', 'staff']);
  const context = await app.browser.newContext();
  const page = await context.newPage();
  await signInAt(page, 'alice');
  assert.equal(await page.locator('.who [data-user]').textContent(), 'alice');
  assert.match(app.log(), /discovering again/);
  await context.close();
});
