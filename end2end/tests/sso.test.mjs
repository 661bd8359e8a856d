// Single sign-on through a real OpenID Connect provider process
// (oidc-provider-mock): a user whose group maps to `approver` signs in and
// lands where they wanted to go with that role; a user whose groups map to
// nothing is turned away; a renamed person stays one account, a reused name
// is not another's account; key rotation is survived; a session lasts
// SLIPWAY_SSO_SESSION_SECS, then the provider is asked again.
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

/** Slipway signing in through the provider; `extra` settings on top. */
function withProvider(extra = {}) {
  return (baseUrl) => ({
    SLIPWAY_EXTERNAL_URL: baseUrl,
    SLIPWAY_OIDC_ISSUER: issuer,
    SLIPWAY_OIDC_CLIENT_ID: 'slipway',
    SLIPWAY_OIDC_CLIENT_SECRET: 'a-client-secret',
    SLIPWAY_OIDC_ROLE_MAP: 'ml-approvers=approver;platform=admin',
    ...extra,
  });
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
  app = await startSlipway(withProvider());
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

async function signInAt(page, sub, at = app) {
  await page.goto(`${at.baseUrl}/login?next=${encodeURIComponent('/approvals')}`);
  await page.getByRole('link', { name: 'Sign in with 127.0.0.1' }).click();
  await authorizeAs(page, sub, at);
}

/** At the provider's authorize form: `sub` says yes; back at Slipway. */
async function authorizeAs(page, sub, at = app) {
  await page.waitForURL(`${issuer}/oauth2/authorize?**`);
  await page.fill('input[name="sub"]', sub);
  await Promise.all([page.waitForURL(`${at.baseUrl}/**`), page.getByRole('button', { name: 'Authorize' }).click()]);
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

test('single sign-on: a session lasts its time, then a page visit asks the provider again, which says what the groups are now', async () => {
  const short = await startSlipway(withProvider({ SLIPWAY_SSO_SESSION_SECS: '2' }));
  try {
    await setUser('dave', 'dave', ['ml-approvers']);
    await setUser('erin', 'erin', ['ml-approvers']);
    const pages = {};
    for (const sub of ['dave', 'erin']) {
      const context = await short.browser.newContext();
      pages[sub] = await context.newPage();
      await signInAt(pages[sub], sub, short);
      assert.equal(await pages[sub].locator('.who [data-user]').textContent(), sub);
    }
    // The provider takes dave's group away; nobody signs in anew.
    await setUser('dave', 'dave', ['staff']);
    // Once the session's time is up, a page visit goes to the provider
    // (with the page to come back to), not to Slipway's own sign-in form.
    const toProvider = async (page, path) => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        await page.goto(`${short.baseUrl}${path}`);
        if (page.url().startsWith(`${issuer}/oauth2/authorize`)) return;
        assert.equal(new URL(page.url()).pathname, path, 'still signed in meanwhile');
        assert.ok(Date.now() < deadline, 'the session outlived its time');
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    };
    await toProvider(pages.dave, '/approvals');
    await authorizeAs(pages.dave, 'dave', short);
    const refused = new URL(pages.dave.url());
    assert.equal(`${refused.pathname}${refused.search}`, '/login?error=sso', 'no role any more');
    await pages.dave.goto(`${short.baseUrl}/approvals`);
    assert.equal(new URL(pages.dave.url()).pathname, '/login', 'signed out: his role ended');
    // Erin still has her group: through the provider and back to the page she asked for.
    await toProvider(pages.erin, '/launch');
    await authorizeAs(pages.erin, 'erin', short);
    assert.equal(new URL(pages.erin.url()).pathname, '/launch');
    assert.equal(await pages.erin.locator('.who [data-user]').getAttribute('title'), 'approver');
  } finally {
    await short.stop();
  }
});
