// tests/server/browser.mjs - the browser half of tests/test_browser.sh: headless
// Chromium (playwright-core, the system's chromium) opens the app of a running
// `streamllm serve` and checks, in the page:
//  - GET / loads and the page is crossOriginIsolated (COOP + COEP), with
//    SharedArrayBuffer;
//  - /api/models -> manifest -> a shard: the whole shard's SHA-256 is the
//    manifest's; a Range request gives 206, Content-Range and the right bytes;
//    a download cut in two Range requests, and one aborted mid-stream and
//    resumed from the bytes received, both join to the right SHA-256; an
//    unsatisfiable Range gives 416 with bytes */SIZE;
//  - from another origin: a server with --cors naming the app's origin can be
//    read (Content-Range and ETag exposed); one without --cors cannot.
// Usage: node tests/server/browser.mjs APP_URL CORS_URL PLAIN_URL [SCREENSHOT.png]
// Prints "N passed, N failed".
import { chromium } from 'playwright-core';

const [appUrl, corsUrl, plainUrl, screenshot] = process.argv.slice(2);
let pass = 0;
let fail = 0;
function check(name, cond, detail = '') {
  if (cond) {
    pass++;
    if (process.env.TEST_VERBOSE) console.error(`ok   ${name}`);
  } else {
    fail++;
    console.error(`FAIL ${name}${detail ? `: ${detail}` : ''}`);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(30000);
  const res = await page.goto(`${appUrl}/`, { waitUntil: 'load' });
  check('GET / is 200', res.status() === 200, `status ${res.status()}`);
  check('crossOriginIsolated', await page.evaluate(() => globalThis.crossOriginIsolated === true));
  check('SharedArrayBuffer exists', await page.evaluate(() => typeof SharedArrayBuffer === 'function'));

  const r = await page.evaluate(async () => {
    const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
    const sha = async (bytes) => hex(await crypto.subtle.digest('SHA-256', bytes));
    const get = (url, range) => fetch(url, { cache: 'no-store', headers: range ? { Range: range } : {} });
    const join = (parts) => {
      const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.length;
      }
      return out;
    };
    const list = await (await get('/api/models')).json();
    const manifest = await (await get(list.models[0].manifest)).json();
    // the largest shard, so that an aborted read stops partway
    const shard = manifest.shards.reduce((a, b) => (b.bytes > a.bytes ? b : a));
    const url = new URL(shard.url, location.href).href;
    const out = { bytes: shard.bytes, want: shard.sha256 };

    const full = new Uint8Array(await (await get(url)).arrayBuffer());
    out.fullLength = full.length;
    out.fullSha = await sha(full);

    const r1 = await get(url, 'bytes=100-199');
    const part = new Uint8Array(await r1.arrayBuffer());
    out.rangeStatus = r1.status;
    out.contentRange = r1.headers.get('Content-Range');
    out.rangeBytesOk = part.length === 100 && part.every((b, i) => b === full[100 + i]);

    const half = Math.floor(shard.bytes / 2);
    const a = new Uint8Array(await (await get(url, `bytes=0-${half - 1}`)).arrayBuffer());
    const rb = await get(url, `bytes=${half}-`);
    const b = new Uint8Array(await rb.arrayBuffer());
    out.secondHalfStatus = rb.status;
    out.halvesSha = await sha(join([a, b]));

    // an aborted download, resumed from what arrived
    const ctrl = new AbortController();
    const resp = await fetch(url, { cache: 'no-store', signal: ctrl.signal });
    const reader = resp.body.getReader();
    const got = [];
    let n = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      got.push(value);
      n += value.length;
      if (n >= 1000) break;
    }
    ctrl.abort();
    out.abortedAt = n;
    if (n < shard.bytes) {
      const rest = await get(url, `bytes=${n}-`);
      out.resumeStatus = rest.status;
      got.push(new Uint8Array(await rest.arrayBuffer()));
    } else {
      out.resumeStatus = 206; // all of it came in one read: nothing to resume
    }
    out.resumedSha = await sha(join(got));

    const r416 = await get(url, `bytes=${shard.bytes}-`);
    out.unsatStatus = r416.status;
    out.unsatRange = r416.headers.get('Content-Range');
    return out;
  });
  check('whole shard: SHA-256 as in the manifest', r.fullSha === r.want && r.fullLength === r.bytes);
  check('Range in the page: 206', r.rangeStatus === 206, `status ${r.rangeStatus}`);
  check('Range in the page: Content-Range', r.contentRange === `bytes 100-199/${r.bytes}`, r.contentRange);
  check('Range in the page: the bytes', r.rangeBytesOk);
  check('two halves by Range: 206 + SHA-256', r.secondHalfStatus === 206 && r.halvesSha === r.want);
  check('aborted and resumed: SHA-256', r.resumeStatus === 206 && r.resumedSha === r.want,
    `aborted at ${r.abortedAt}, resume status ${r.resumeStatus}`);
  check('unsatisfiable Range: 416 + bytes */SIZE', r.unsatStatus === 416 && r.unsatRange === `bytes */${r.bytes}`,
    `${r.unsatStatus} ${r.unsatRange}`);

  const crossOrigin = (base) => page.evaluate(async (b) => {
    try {
      const list = await (await fetch(`${b}/api/models`)).json();
      const manifest = await (await fetch(`${b}${list.models[0].manifest}`)).json();
      const url = new URL(manifest.shards[0].url, `${b}/`).href;
      const res = await fetch(url, { headers: { Range: 'bytes=0-9' } });
      const len = (await res.arrayBuffer()).byteLength;
      return { status: res.status, contentRange: res.headers.get('Content-Range'), etag: res.headers.get('ETag'), len };
    } catch (e) {
      return { error: String(e) };
    }
  }, base);
  const c = await crossOrigin(corsUrl);
  check('cross-origin with --cors: 206 read', c.status === 206 && c.len === 10, JSON.stringify(c));
  check('cross-origin with --cors: Content-Range and ETag exposed',
    /^bytes 0-9\/\d+$/.test(c.contentRange ?? '') && /^"[0-9a-f]{64}"$/.test(c.etag ?? ''), JSON.stringify(c));
  const p = await crossOrigin(plainUrl);
  check('cross-origin without --cors: blocked', typeof p.error === 'string', JSON.stringify(p));

  if (screenshot) await page.screenshot({ path: screenshot });
} catch (e) {
  check('browser session', false, e.stack || String(e));
} finally {
  await browser.close();
}
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
