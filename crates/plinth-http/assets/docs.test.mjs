// Browser test for the API reference page served at GET /docs (assets/docs.html).
//
//   PLINTH_URL=http://127.0.0.1:8080 [CHROMIUM=/usr/bin/chromium] [SCREENSHOT=shot.png] node docs.test.mjs
//
// Requires `playwright-core` resolvable from here (e.g. NODE_PATH=/path/to/node_modules) and a
// system Chromium. Runs against a live server whose spec has at least /v1/posts and /v1/posts/{id}.
// Fixture specs are served through request interception (?spec=/__plinth_docs_test/...), so the
// server needs no test routes. Exits non-zero on any failure; last line is "N passed, M failed".
import { chromium } from 'playwright-core';

const PLINTH_URL = process.env.PLINTH_URL;
if (!PLINTH_URL) {
  console.error('docs.test.mjs: PLINTH_URL is required (e.g. PLINTH_URL=http://127.0.0.1:8080)');
  process.exit(2);
}
const BASE = PLINTH_URL.replace(/\/+$/, '');
const DOCS = `${BASE}/docs`;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = process.env.SCREENSHOT || '';
const TIMEOUT = 15000;

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   - ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL - ${name}\n       ${String(err && err.message ? err.message : err).split('\n').join('\n       ')}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// A spec exercising escaping and schema edge cases, served only via page.route().
const FIXTURE = {
  openapi: '3.1.0',
  info: { title: 'Fixture <script>window.__xss=1</script>', version: '9.9.9', description: 'Desc <img src=x onerror="window.__xss=2">' },
  paths: {
    '/v1/things/{id}': {
      get: {
        operationId: 'things.get',
        tags: ['things'],
        summary: '<b>not bold</b>',
        parameters: [
          { name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } },
          { name: 'mode', in: 'query', schema: { type: 'string', enum: ['fast', 'slow'], default: 'fast' } },
        ],
        responses: {
          200: { description: 'ok', content: { 'application/json': { schema: { $ref: '#/components/schemas/Node' } } } },
          default: { $ref: '#/components/responses/Problem' },
        },
      },
    },
    '/untagged': {
      post: {
        requestBody: { content: { 'application/json': { schema: { $ref: '#/components/schemas/Input' } } } },
        responses: { 204: { description: 'none' } },
      },
    },
  },
  components: {
    schemas: {
      Node: {
        type: 'object',
        required: ['name'],
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 10, pattern: '^[a-z]+$' },
          note: { type: ['string', 'null'] },
          parent: { $ref: '#/components/schemas/Node' },
          kind: { oneOf: [{ type: 'integer', minimum: 0 }, { type: 'null' }] },
          missing: { $ref: '#/components/schemas/DoesNotExist' },
        },
      },
      Input: { type: 'object', additionalProperties: false, properties: { list: { type: 'array', items: { $ref: '#/components/schemas/Node' } } } },
      Problem: { type: 'object', properties: { type: { type: 'string' }, status: { type: 'integer' } } },
    },
    responses: {
      Problem: { description: 'Problem', content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } },
    },
  },
};

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const watchdog = setTimeout(() => {
  console.error('docs.test.mjs: timed out after 120s');
  process.exit(1);
}, 120000);

// Opens a page that records console errors, page errors and dialogs (a dialog would mean script injection).
async function openPage() {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(TIMEOUT);
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    if (/favicon\.ico/.test(msg.location()?.url || '')) return; // server has no favicon; not the page's fault
    problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('dialog', (d) => { problems.push(`unexpected dialog: ${d.message()}`); d.dismiss().catch(() => {}); });
  await page.route((url) => url.pathname === '/__plinth_docs_test/fixture.json', (route) =>
    route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(FIXTURE) }));
  await page.route((url) => url.pathname === '/__plinth_docs_test/missing.json', (route) =>
    route.fulfill({ status: 404, contentType: 'application/problem+json', body: '{"title":"Not Found","status":404}' }));
  return { page, problems };
}
const rendered = (page) => page.waitForFunction(
  () => document.querySelector('#nav a[data-id]') || document.querySelector('.error'), null, { timeout: TIMEOUT });
// [{id, method, path, summary, visible}] for every operation link in the sidebar.
const navOps = (page) => page.$$eval('#nav a[data-id]', (as) => as.filter((a) => a.querySelector('.badge')).map((a) => ({
  id: a.dataset.id,
  method: a.querySelector('.badge').textContent.trim(),
  path: a.querySelector('.nav-path').textContent,
  summary: a.title,
  visible: !a.closest('[hidden]'),
})));
const inViewport = (page, id) => page.evaluate((id) => {
  const r = document.getElementById(id).getBoundingClientRect();
  return r.top >= -2 && r.top < window.innerHeight;
}, id);
function findOp(ops, method, path) {
  return ops.find((o) => o.method === method && o.path === path) || (method ? null : ops.find((o) => o.path === path));
}

try {
  const { page, problems } = await openPage();
  let ops = [];

  await check('GET /docs serves an HTML page', async () => {
    const res = await page.goto(DOCS, { waitUntil: 'domcontentloaded' });
    assert(res, 'no response');
    assert(res.status() === 200, `status ${res.status()}`);
    const ct = res.headers()['content-type'] || '';
    assert(/^text\/html/i.test(ct), `content-type is "${ct}", expected text/html`);
  });

  await check('spec loads and renders without an error box', async () => {
    await rendered(page);
    const err = await page.$('.error');
    assert(!err, `page shows error: ${err && (await err.textContent())}`);
    ops = await navOps(page);
    assert(ops.length > 0, 'no operations in nav');
    const title = await page.textContent('h1');
    assert(title && title.trim(), 'missing title');
  });

  await check('nav lists /v1/posts and /v1/posts/{id} operations', async () => {
    const paths = new Set(ops.map((o) => o.path));
    assert(paths.has('/v1/posts'), `no /v1/posts in nav; saw ${[...paths].join(', ')}`);
    assert(paths.has('/v1/posts/{id}'), `no /v1/posts/{id} in nav; saw ${[...paths].join(', ')}`);
    assert(findOp(ops, 'GET', '/v1/posts'), 'no GET /v1/posts in nav');
  });

  await check('every nav link has an operation section', async () => {
    const missing = await page.evaluate((ids) => ids.filter((id) => !document.getElementById(id)?.classList.contains('op')), ops.map((o) => o.id));
    assert(missing.length === 0, `no section for: ${missing.join(', ')}`);
  });

  await check('clicking GET /v1/posts/{id} shows it with its path parameter', async () => {
    const op = findOp(ops, 'GET', '/v1/posts/{id}') || findOp(ops, null, '/v1/posts/{id}');
    await page.click(`#nav a[data-id="${op.id}"]`);
    await page.waitForFunction((id) => document.getElementById(id).classList.contains('current'), op.id);
    const hash = await page.evaluate(() => decodeURIComponent(location.hash.slice(1)));
    assert(hash === op.id, `hash is "${hash}", expected "${op.id}"`);
    assert(await inViewport(page, op.id), 'section not scrolled into view');
    assert(await page.$eval(`#nav a[data-id="${op.id}"]`, (a) => a.classList.contains('active')), 'nav link not marked active');
    const rows = await page.$$eval(`[id="${op.id}"] table tbody tr`, (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent.trim())));
    assert(rows.some((r) => r[0] === 'id' && r[1] === 'path' && r[2] === 'required'), `no required path param "id"; rows: ${JSON.stringify(rows)}`);
    const statuses = await page.$$eval(`[id="${op.id}"] .status`, (s) => s.map((x) => x.textContent));
    assert(statuses.length > 0, 'no responses rendered');
    if (SCREENSHOT) await page.screenshot({ path: SCREENSHOT });
  });

  await check('collection operations render request/response schemas', async () => {
    const list = findOp(ops, 'GET', '/v1/posts');
    const listInfo = await page.$eval(`[id="${list.id}"]`, (s) => ({
      h4: [...s.querySelectorAll('h4')].map((x) => x.textContent),
      trees: s.querySelectorAll('.tree .node').length,
    }));
    assert(listInfo.h4.includes('Responses'), 'GET /v1/posts has no Responses heading');
    assert(listInfo.trees > 0, 'GET /v1/posts has no response schema tree');
    const create = findOp(ops, 'POST', '/v1/posts');
    if (create) {
      const info = await page.$eval(`[id="${create.id}"]`, (s) => ({
        h4: [...s.querySelectorAll('h4')].map((x) => x.textContent),
        props: s.querySelectorAll('.tree .pname').length,
      }));
      assert(info.h4.some((t) => t.startsWith('Request body')), 'POST /v1/posts has no request body');
      assert(info.props > 0, 'POST /v1/posts request/response schemas show no properties');
    }
  });

  await check('schema $ref links point at existing anchors and navigate', async () => {
    const broken = await page.$$eval('a.reflink', (as) => as.map((a) => decodeURIComponent(a.getAttribute('href').slice(1)))
      .filter((id) => !document.getElementById(id)));
    assert(broken.length === 0, `broken ref links: ${[...new Set(broken)].join(', ')}`);
    const first = await page.$('main .op a.reflink');
    if (first) {
      const target = decodeURIComponent((await first.getAttribute('href')).slice(1));
      await first.click();
      await page.waitForFunction((id) => document.getElementById(id).classList.contains('current'), target);
      assert(await inViewport(page, target), `${target} not scrolled into view`);
    }
  });

  await check('search filters operations by path and shows an empty state', async () => {
    const q = '/v1/posts/{id}';
    await page.fill('#search', q);
    let now = await navOps(page);
    const visible = now.filter((o) => o.visible);
    assert(visible.length > 0, 'nothing visible for /v1/posts/{id}');
    assert(visible.every((o) => (o.path + ' ' + o.summary).toLowerCase().includes(q)), `unrelated ops visible: ${visible.map((o) => o.path).join(', ')}`);
    assert(now.some((o) => !o.visible), 'nothing hidden by the filter');
    const hiddenSections = await page.$$eval('main .op', (s) => s.filter((x) => x.closest('[hidden]')).length);
    assert(hiddenSections > 0, 'operation sections in main were not filtered');
    await page.fill('#search', 'zz-no-such-operation-zz');
    now = await navOps(page);
    assert(now.every((o) => !o.visible), 'ops still visible for a nonsense query');
    assert(await page.isVisible('.nav-empty'), 'no empty-state message');
    await page.press('#search', 'Escape');
    now = await navOps(page);
    assert(now.every((o) => o.visible), 'Escape did not clear the filter');
  });

  await check('deep link /docs#<operationId> highlights and scrolls to the operation', async () => {
    const op = findOp(ops, null, '/v1/posts/{id}');
    const { page: p2, problems: pr2 } = await openPage();
    await p2.goto(`${DOCS}#${encodeURIComponent(op.id)}`);
    await rendered(p2);
    await p2.waitForFunction((id) => document.getElementById(id)?.classList.contains('current'), op.id);
    assert(await inViewport(p2, op.id), 'deep-linked section not in view');
    problems.push(...pr2);
    await p2.close();
  });

  await check('a failing spec URL shows a clear error message', async () => {
    const { page: p3 } = await openPage(); // 404 console noise expected here; not collected
    await p3.goto(`${DOCS}?spec=/__plinth_docs_test/missing.json`);
    await p3.waitForSelector('.error');
    const text = await p3.textContent('.error');
    assert(/Could not load the API specification/.test(text) && /404/.test(text), `unexpected error text: ${text}`);
    await p3.close();
  });

  await check('fixture spec: text is escaped and schema features render', async () => {
    const { page: p4, problems: pr4 } = await openPage();
    await p4.goto(`${DOCS}?spec=/__plinth_docs_test/fixture.json`);
    await rendered(p4);
    const r = await p4.evaluate(() => ({
      xss: window.__xss,
      h1: document.querySelector('h1').textContent,
      injected: document.querySelectorAll('main img, main b, main script').length,
      groups: [...document.querySelectorAll('.nav-tag')].map((x) => x.textContent),
      chips: [...document.querySelectorAll('.chip')].map((x) => x.textContent),
      enums: [...document.querySelectorAll('.enum code')].map((x) => x.textContent),
      labels: [...document.querySelectorAll('.comb-label')].map((x) => x.textContent),
      schemaIds: [...document.querySelectorAll('#schemas .component')].map((x) => x.id),
      responseIds: [...document.querySelectorAll('#responses .component')].map((x) => x.id),
    }));
    assert(r.xss === undefined, 'injected script ran');
    assert(r.injected === 0, 'spec text was parsed as HTML');
    assert(r.h1.includes('<script>'), `title not shown literally: ${r.h1}`);
    assert(r.groups.includes('things') && r.groups.includes('Other'), `nav groups: ${r.groups}`);
    for (const c of ['nullable', 'recursive', 'no additional properties', 'minLength: 1', 'maxLength: 10', 'pattern: ^[a-z]+$',
      'default: "fast"', 'uuid', 'minimum: 0', 'unresolved $ref']) {
      assert(r.chips.includes(c), `missing chip "${c}"`);
    }
    assert(r.enums.includes('"fast"') && r.enums.includes('"slow"'), `enum values: ${r.enums}`);
    assert(r.labels.includes('one of'), 'oneOf not rendered');
    assert(['schema-Node', 'schema-Input', 'schema-Problem'].every((id) => r.schemaIds.includes(id)), `schemas: ${r.schemaIds}`);
    assert(r.responseIds.includes('response-Problem'), `responses: ${r.responseIds}`);
    problems.push(...pr4);
    await p4.close();
  });

  await check('no console errors, page errors or dialogs', async () => {
    assert(problems.length === 0, problems.join('\n'));
  });
} catch (err) {
  failed++;
  console.log(`FAIL - unexpected: ${err && err.stack ? err.stack : err}`);
} finally {
  clearTimeout(watchdog);
  await browser.close().catch(() => {});
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
