#!/usr/bin/env node
// bench/soak-browser.mjs - the soak's browser loader (bench/soak.sh with
// LOADER=browser): headless Chromium opens the chat page of a running
// `streamllm serve`, loads model ID and continues "Once upon a time"
// greedily (32 tokens), again and again until SECONDS have passed; every
// other round in a fresh browser context (the model comes from the network),
// the others after a reload (from the browser's cache). Prints one line per
// round: "ok SOURCE", "differs SOURCE: TEXT" (not the first round's text) or
// "failed SOURCE: WHY".
//
//   node bench/soak-browser.mjs URL ID SECONDS
import { chromium } from 'playwright-core';
import { LAUNCH, CHROMIUM_ARGS, loadModel, sendAndWait } from '../tests/browser/page.mjs';

const [url, id, seconds] = process.argv.slice(2);
if (!seconds) {
  console.error('usage: node bench/soak-browser.mjs URL ID SECONDS');
  process.exit(2);
}
const deadline = Date.now() + Number(seconds) * 1000;
const browser = await chromium.launch({ ...LAUNCH, args: CHROMIUM_ARGS });
let first = null;
let context = null;
let page = null;
for (let round = 0; Date.now() < deadline; round++) {
  const fresh = round % 2 === 0;
  const source = fresh ? 'network' : 'cache';
  try {
    if (fresh) {
      await context?.close();
      context = await browser.newContext();
      page = await context.newPage();
      await page.goto(`${url}/`);
    } else {
      await page.reload();
    }
    const loaded = await loadModel(page, id);
    if (loaded.state !== 'ready') throw new Error(`load: ${loaded.error}`);
    const r = await sendAndWait(page, 'Once upon a time', { maxTokens: 32, temperature: 0 });
    if (r.finish !== 'length') throw new Error(`generation ended with ${r.finish}: ${r.note}`);
    first ??= r.text;
    console.log(r.text === first ? `ok ${source}` : `differs ${source}: ${JSON.stringify(r.text)}`);
  } catch (e) {
    console.log(`failed ${source}: ${String(e.message ?? e).split('\n')[0]}`);
    await context?.close().catch(() => {});
    context = null;
  }
}
await browser.close();
