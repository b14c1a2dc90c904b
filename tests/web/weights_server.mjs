// weights_server.mjs - a small HTTP file server for the StreamWeightManager
// tests (tests/web/weights*.test.mjs) that counts every byte it sends and
// misbehaves on request: connection cut or reset mid-file, stalls, error
// statuses, corrupted bytes, a wrong Content-Length, Range ignored, slow
// sending. Serves the files of a directory (switchable) under /m/; Range,
// ETag (the file's SHA-256 unless told otherwise); CORS, COOP/COEP and CORP
// headers so that a browser page of another origin can read it.
//
//   const srv = await startServer({ dir });         // 127.0.0.1, a free port
//   srv.url('manifest.json')                          // http://127.0.0.1:PORT/m/manifest.json
//   srv.fault({ file, kind, at, times, status, ... }) // see below
//   srv.bytes(file), srv.requests(file), srv.log      // counters
//   srv.overlap(file)                                 // the most responses of file sent at once
//   await srv.idle()                                  // no response in progress
//   await srv.stop()
//
// Faults (each applies to requests of `file` (a name, or null for any),
// `times` times, default 1; `at` is an absolute offset in the file):
//   close   send up to byte `at`, then close the connection (body cut short)
//   reset   send up to byte `at`, then reset the connection (TCP RST)
//   stall   send up to byte `at`, then send nothing more (the client times out)
//   status  answer `status` (500, 404, 503 ...) with an optional Retry-After `retryAfter`
//   corrupt flip the bits of byte `at` in what is sent
//   length  declare Content-Length `declared` (more or less than what is sent)
//   norange ignore the Range header (200 with the whole file)
//   slow    send at most `rate` bytes per second
//   redirect  answer `status` (302 ...) with Location /cdn/NAME, where the same
//           directory is served without faults (as a CDN behind a hub does)

import http from 'node:http';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { once } from 'node:events';

const CHUNK = 256 * 1024;

// Resolves when out drains or the socket closes (listeners removed after;
// at once when it closed already: its 'close' event is gone).
function drained(out, socket) {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    const done = () => {
      out.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    out.on('drain', done);
    socket.on('close', done);
  });
}

export async function startServer({ dir, etag = 'sha256', root = null } = {}) {
  const state = {
    dir,
    faults: [],
    log: [], // { file, method, range, status, bytes, fault, start, end (ms; end: null while sending) }
    sent: new Map(), // file -> bytes
    inflight: 0,
    maxInflight: 0,
    hashes: new Map(),
    sockets: new Set(),
  };

  async function etagOf(file, st) {
    if (etag === 'none') return null;
    if (etag === 'mtime') return `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    const key = `${file}:${st.size}:${st.mtimeMs}`;
    if (!state.hashes.has(key)) {
      const h = crypto.createHash('sha256');
      for await (const c of fs.createReadStream(file)) h.update(c);
      state.hashes.set(key, `"${h.digest('hex')}"`);
    }
    return state.hashes.get(key);
  }

  // The first fault of these kinds for this file that applies to the byte
  // range [start, end] (one with `at` only when the range holds it).
  function takeFault(name, kinds, start = 0, end = Infinity) {
    const f = state.faults.find((x) => (x.file === null || x.file === name) && kinds.includes(x.kind) && x.times > 0
      && (x.at === undefined || (x.at >= start && x.at <= end)));
    if (f) f.times--;
    return f ?? null;
  }

  async function handle(req, res) {
    const u = new URL(req.url, 'http://x');
    const common = {
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Allow-Headers': 'Range, If-Range',
      'Access-Control-Expose-Headers': 'Content-Range, ETag, Content-Length, Accept-Ranges',
      'Cross-Origin-Resource-Policy': 'cross-origin',
    };
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...common, 'Access-Control-Allow-Methods': 'GET, HEAD' });
      return res.end();
    }
    let name;
    let file;
    const cdn = u.pathname.startsWith('/cdn/');
    if (u.pathname.startsWith('/m/') || cdn) {
      name = decodeURIComponent(u.pathname.slice(cdn ? 5 : 3));
      if (name.includes('/') || name.startsWith('.')) name = null;
      file = name && path.join(state.dir, name);
    } else if (root) {
      // static files (the test pages, the engine's modules), cross-origin isolated
      name = null;
      const rel = decodeURIComponent(u.pathname).replace(/^\/+/, '');
      file = path.join(root, rel);
      if (!file.startsWith(root)) file = null;
      Object.assign(common, { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' });
    }
    const entry = { file: name, method: req.method, range: req.headers.range ?? null, status: 0, bytes: 0, fault: null, start: performance.now(), end: null };
    res.on('close', () => { entry.end = performance.now(); });
    state.log.push(entry);
    const redirect = name && !cdn && takeFault(name, ['redirect']);
    if (redirect) {
      entry.status = redirect.status;
      entry.fault = 'redirect';
      res.writeHead(redirect.status, { ...common, Location: `/cdn/${encodeURIComponent(name)}`, 'Content-Type': 'text/plain' });
      return res.end('moved');
    }
    const statusFault = name && !cdn && takeFault(name, ['status']);
    if (statusFault) {
      entry.status = statusFault.status;
      entry.fault = 'status';
      const h = { ...common, 'Content-Type': 'text/plain' };
      if (statusFault.retryAfter !== undefined) h['Retry-After'] = String(statusFault.retryAfter);
      res.writeHead(statusFault.status, h);
      return res.end('fault');
    }
    let st;
    try {
      st = file ? await fsp.stat(file) : null;
    } catch {
      st = null;
    }
    if (!st || !st.isFile()) {
      entry.status = 404;
      res.writeHead(404, { ...common, 'Content-Type': 'text/plain' });
      return res.end('not found');
    }
    const size = st.size;
    const tag = await etagOf(file, st);
    const type = file.endsWith('.json') ? 'application/json' : file.endsWith('.html') ? 'text/html'
      : /\.m?js$/.test(file) ? 'text/javascript' : file.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream';
    const headers = { ...common, 'Content-Type': type, 'Accept-Ranges': 'bytes', 'Cache-Control': 'no-cache' };
    if (tag) headers.ETag = tag;
    let start = 0;
    let end = size - 1;
    let status = 200;
    const noRange = name && takeFault(name, ['norange']);
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (m && !noRange) {
      start = Number(m[1]);
      if (m[2] !== '') end = Math.min(end, Number(m[2]));
      if (start >= size || start > end) {
        entry.status = 416;
        res.writeHead(416, { ...common, 'Content-Range': `bytes */${size}` });
        return res.end();
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    }
    if (noRange) entry.fault = 'norange';
    let length = end - start + 1;
    const cut = name && takeFault(name, ['close', 'reset', 'stall'], start + 1, end);
    const corrupt = name && takeFault(name, ['corrupt'], start, end);
    const wrongLength = name && takeFault(name, ['length']);
    const slow = name && state.faults.find((x) => (x.file === null || x.file === name) && x.kind === 'slow' && x.times > 0);
    if (cut) entry.fault = cut.kind;
    if (corrupt) entry.fault = 'corrupt';
    if (wrongLength) {
      entry.fault = 'length';
      headers['Content-Length'] = String(wrongLength.declared);
    } else {
      headers['Content-Length'] = String(length);
    }
    entry.status = status;
    if (req.method === 'HEAD') {
      res.writeHead(status, headers);
      return res.end();
    }
    // a wrong Content-Length goes out on the raw socket (http.ServerResponse refuses it)
    const raw = wrongLength ? req.socket : null;
    if (raw) {
      let head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n`;
      for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
      raw.write(`${head}Connection: close\r\n\r\n`);
    } else {
      res.writeHead(status, headers);
    }
    const out = raw ?? res;
    const stopAt = cut ? Math.max(start, Math.min(cut.at, end + 1)) : end + 1;
    const fh = await fsp.open(file, 'r');
    state.inflight++;
    state.maxInflight = Math.max(state.maxInflight, state.inflight);
    let counted = true;
    const uncount = () => {
      if (counted) state.inflight--;
      counted = false;
    };
    try {
      let pos = start;
      const t0 = Date.now();
      while (pos < stopAt) {
        if (req.socket.destroyed) return;
        // a slow answer goes out in pieces of 1/20 s each, each sent when due
        const n = Math.min(slow ? Math.max(1024, Math.floor(slow.rate / 20)) : CHUNK, stopAt - pos);
        if (slow) {
          const due = ((pos + n - start) / slow.rate) * 1000 - (Date.now() - t0);
          if (due > 0) await new Promise((r) => setTimeout(r, due));
        }
        const buf = Buffer.allocUnsafe(n); // a new one each time: write() keeps it until sent
        const { bytesRead } = await fh.read(buf, 0, n, pos);
        if (bytesRead === 0) break;
        const piece = buf.subarray(0, bytesRead);
        if (corrupt && corrupt.at >= pos && corrupt.at < pos + bytesRead) piece[corrupt.at - pos] ^= 0xff;
        entry.bytes += bytesRead;
        state.sent.set(name, (state.sent.get(name) ?? 0) + bytesRead);
        pos += bytesRead;
        if (pos >= stopAt && !cut) uncount(); // the client may ask again as soon as it has these bytes
        if (!out.write(piece)) await drained(out, req.socket);
      }
      if (cut) {
        // every byte up to `at` handed to the kernel, then the cut
        await new Promise((r) => out.write('', r));
        uncount();
        if (cut.kind === 'close') req.socket.destroy();
        else if (cut.kind === 'reset') req.socket.resetAndDestroy();
        else await once(req.socket, 'close'); // stall: until the client gives up
        return;
      }
      uncount(); // before the end: the client may ask again as soon as it sees it
      if (raw) raw.end();
      else res.end();
    } finally {
      uncount();
      await fh.close();
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(e));
    });
  });
  server.on('connection', (s) => {
    state.sockets.add(s);
    s.on('close', () => state.sockets.delete(s));
  });
  server.keepAliveTimeout = 5000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  const base = `http://127.0.0.1:${port}`;

  return {
    port,
    base,
    state,
    get log() { return state.log; },
    url: (file) => `${base}/m/${file}`,
    setDir(d) { state.dir = d; },
    fault(f) {
      const x = { file: null, times: 1, ...f };
      state.faults.push(x);
      return x;
    },
    clearFaults() { state.faults.length = 0; },
    // bytes sent of a file, or of every file under /m/ but manifest.json
    // (not the static files: their name is null)
    bytes: (file) => (file === undefined
      ? [...state.sent].filter(([f]) => f !== null && f !== 'manifest.json').reduce((a, [, n]) => a + n, 0)
      : state.sent.get(file) ?? 0),
    requests: (file) => state.log.filter((e) => e.file === file),
    overlap(file) {
      const log = state.log.filter((e) => e.file === file && e.bytes > 0);
      return Math.max(0, ...log.map((e) => log.filter((x) => x.start <= e.start && (x.end ?? Infinity) > e.start).length));
    },
    reset() {
      state.log.length = 0;
      state.sent.clear();
      state.maxInflight = state.inflight;
    },
    get maxInflight() { return state.maxInflight; },
    // resolves once no response is being sent (an aborted client's may run on a little)
    async idle(timeoutMs = 10000) {
      const t0 = Date.now();
      while (state.inflight > 0 && Date.now() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 10));
    },
    async stop() {
      server.close();
      for (const s of state.sockets) s.destroy();
      await once(server, 'close').catch(() => {});
    },
  };
}
