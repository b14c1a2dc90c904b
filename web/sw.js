// sw.js - the chat app's service worker: keeps the app itself (page,
// scripts, engine.wasm) and the model list/manifests so that the page reloads
// with the server gone. Network first (a running server always wins, so
// updates show at once), the cache when the network fails; such answers carry
// X-Stream-LLM-Offline: 1, which the page shows as "offline". Model shards
// are not touched here: the weight manager keeps them (OPFS) and fetches
// with Range requests of its own.

const CACHE = 'stream-llm-app-v3';
const APP_FILES = ['./', 'index.html', 'app.js', 'app.css', 'markdown.js', 'stream-llm.js', 'engine/worker.mjs', 'engine/engine.mjs',
  'engine/wasm.mjs', 'engine/ring.mjs', 'engine/weights.mjs', 'engine/webgpu.mjs', 'engine/engine.wasm', 'engine/engine-mt.wasm',
  'engine/engine-relaxed.wasm', 'engine/engine-relaxed-mt.wasm',
  'engine/rendezvous.mjs', 'engine/sha256.mjs', 'engine/download.mjs', 'engine/download-worker.mjs', 'engine/store-common.mjs', 'engine/store-opfs.mjs',
  'engine/store-cache.mjs', 'engine/threads.mjs', 'engine/cpu-worker.mjs', 'engine/gpu-tune.mjs', 'example.html', 'api/models'];

self.addEventListener('install', (ev) => {
  ev.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // one by one: a file this build lacks must not stop the others
    await Promise.all(APP_FILES.map((f) => cache.add(new Request(f, { cache: 'no-cache' })).catch(() => {})));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil((async () => {
    for (const k of await caches.keys()) if (k !== CACHE) await caches.delete(k);
    await self.clients.claim();
  })());
});

function cacheable(req, url) {
  return req.method === 'GET' && url.origin === self.location.origin && !url.pathname.startsWith('/models/') && !req.headers.has('Range');
}

async function networkFirst(req) {
  const cache = await caches.open(CACHE);
  try {
    const res = await fetch(req);
    if (res.ok && res.status === 200) cache.put(req, res.clone()).catch(() => {});
    return res;
  } catch (err) {
    const hit = await cache.match(req, { ignoreSearch: req.mode === 'navigate' });
    if (!hit) throw err;
    const headers = new Headers(hit.headers);
    headers.set('X-Stream-LLM-Offline', '1');
    return new Response(hit.body, { status: hit.status, statusText: hit.statusText, headers });
  }
}

self.addEventListener('fetch', (ev) => {
  const url = new URL(ev.request.url);
  if (cacheable(ev.request, url)) ev.respondWith(networkFirst(ev.request));
});
