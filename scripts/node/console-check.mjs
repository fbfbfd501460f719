// console-check.mjs clicks through the mailpipe ops console (docs/console.md) in a real headless
// Chromium, driven by playwright-core, and saves a screenshot of every step. e2e/console_test.go
// runs it against `mailpipe dev`:
//
//   node console-check.mjs --base http://127.0.0.1:9090 --message-id <id> --target local \
//        --failed-target salesforce --out DIR
//
// Steps: the overview; a lookup of the message by Message-ID, which must show it written to
// --target (with --failed-target, also that target's failed outcome) and dead-lettered; the dead-letter
// list filtered to crm-sink; the newest dead letter's detail; a dry run of its replay; the
// confirmed replay and its result. It exits non-zero with the reason on the first failed check
// and prints a JSON summary on success. The browser is $CHROMIUM_PATH or /usr/bin/chromium
// (Debian's chromium package, installed by scripts/deps.sh).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    base: { type: 'string' },
    'message-id': { type: 'string' },
    target: { type: 'string', default: 'local' },
    'failed-target': { type: 'string', default: '' },
    stage: { type: 'string', default: 'crm-sink' },
    out: { type: 'string' },
  },
});
for (const k of ['base', 'message-id', 'out']) {
  if (!args[k]) {
    console.error(`console-check: --${k} is required`);
    process.exit(2);
  }
}
mkdirSync(args.out, { recursive: true });

const summary = { screenshots: [] };
let step = 0;

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function shot(page, name) {
  step++;
  const file = join(args.out, `${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  summary.screenshots.push(file);
}

async function text(page, selector) {
  return (await page.locator(selector).first().innerText()).trim();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  // No sandbox: CI and the dev container run as root, where Chromium refuses its sandbox.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on('pageerror', (err) => console.error(`page error: ${err}`));

  // 1. Overview.
  const resp = await page.goto(new URL('/console/', args.base).href);
  check(resp && resp.ok(), `overview answered ${resp && resp.status()}`);
  check((await text(page, 'h1')) === 'Overview', 'overview heading');
  const lag = await text(page, '#lag');
  for (const s of ['parser', 'classifier', 'enricher', 'crm-sink']) check(lag.includes(s), `lag table lists ${s}`);
  summary.dlqTotal = await text(page, '#dlq-total');
  await shot(page, 'overview');

  // 2. Message lookup by Message-ID, through the form.
  await page.click('header >> text=Message lookup');
  await page.fill('#q', `<${args['message-id']}>`);
  await Promise.all([page.waitForURL(/\/console\/lookup\?q=/), page.click('#search')]);
  const status = await text(page, '.journey .status');
  summary.status = status;
  check(new RegExp(`${args.target}: (created|updated|unchanged|deduped)`).test(status), `journey status "${status}" shows the message written to ${args.target}`);
  if (args['failed-target']) {
    check(status.includes(`${args['failed-target']}: failed`), `journey status "${status}" shows ${args['failed-target']} failed`);
  }
  for (const kind of ['accepted', 'parsed', 'classified', 'enriched', 'crm', 'dead-letter']) {
    check((await page.locator(`.journey li[data-kind="${kind}"]`).count()) > 0, `the timeline shows ${kind}`);
  }
  const objects = await page.locator('.journey code.object').allInnerTexts();
  check(objects.length > 0, 'the CRM outcome lists the object ids written');
  summary.objects = objects;
  summary.traceId = await text(page, '.journey code.trace');
  await shot(page, 'lookup');

  // 3. Dead letters of the stage, through the filter form.
  await page.click('header >> text=Dead letters');
  await page.fill('#filter input[name=stage]', args.stage);
  await Promise.all([page.waitForURL(/stage=/), page.click('#filter button')]);
  check((await page.locator('#letters a.letter').count()) > 0, `the list shows ${args.stage} dead letters`);
  await shot(page, 'dlq-list');

  // 4. The newest dead letter (the list is newest first).
  await Promise.all([page.waitForURL(/\/console\/dlq\/\d+\/\d+$/), page.locator('#letters a.letter').first().click()]);
  summary.letter = page.url();
  check((await text(page, '#stage')) === args.stage, 'detail shows the stage');
  summary.errorClass = await text(page, '#class');
  summary.errorMessage = await text(page, '#message');
  check(summary.errorClass !== '', 'detail shows the error class');
  const value = await text(page, '#value');
  check(value.includes(args['message-id']), 'the decoded value holds the message');
  await shot(page, 'dlq-detail');

  // 5. Dry run, then 6. the confirmed replay.
  await Promise.all([page.waitForURL(/dry-run$/), page.click('#dry-run')]);
  const would = await text(page, '#would');
  summary.dryRun = would;
  check(would === 'Would replay 1 dead letters', `dry run says "${would}"`);
  await shot(page, 'dry-run');
  await Promise.all([page.waitForURL(/replay$/), page.click('#confirm')]);
  check((await page.locator('#error').count()) === 0, 'the replay reports no error');
  const replayed = await text(page, '#replayed');
  summary.replayed = replayed;
  check(replayed.startsWith('Replayed 1 dead letters'), `result says "${replayed}"`);
  await shot(page, 'replayed');
} catch (err) {
  if (page) {
    try {
      await shot(page, 'failure');
    } catch {
      // the page may be gone; the error below is what matters
    }
  }
  console.error(`console-check: ${err.message}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log(JSON.stringify(summary));
