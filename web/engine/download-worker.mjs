// download-worker.mjs - a Worker (browser module Worker or Node worker_thread)
// that downloads shards, or pieces of them, for the StreamWeightManager (see
// DownloadPool in download.mjs): HTTP, SHA-256 per block and the store's
// writes happen here, off the manager's thread. Messages in:
//   { op: 'run', id, job, options }   a BlockLoader job (download.mjs: a shard or
//                                     a run of its blocks); options.store:
//                                     openStore() arguments or null
//   { op: 'free', id, buf }           a block buffer given back (transferred)
//   { op: 'abort', id }
// out (each may carry counters: deltas of networkBytes, requests, retries, refetches):
//   { ready: true, features } once listening (features: writeFeatures(), what
//                                     this thread offers the store's writers)
//   { id, type: 'block', buf, length, at, fromStore }   a verified block (buf transferred;
//                                     fromStore: its first bytes read from the partial file)
//   { id, type: 'retry' } ; { id, type: 'done' } ; { id, type: 'error', error }
import { Fetcher, BlockLoader, errorToMessage, writeFeatures } from './download.mjs';
import { openStore } from './weights.mjs';

const jobs = new Map(); // id -> { ctrl, waiters: Map(buf -> resolve) }
const stores = new Map(); // JSON of the store's arguments -> store (opened once)

function storeOf(spec) {
  if (!spec) return null;
  const k = JSON.stringify(spec);
  if (!stores.has(k)) stores.set(k, openStore(spec));
  return stores.get(k);
}

async function run({ id, job, options }, post) {
  const ctrl = new AbortController();
  const entry = { ctrl, returned: [], wake: null };
  jobs.set(id, entry);
  const counters = { networkBytes: 0, requests: 0, retries: 0, refetches: 0 };
  // the counts since the last message, sent along with each message
  const delta = () => {
    const d = { ...counters };
    for (const k of Object.keys(counters)) counters[k] = 0;
    return d;
  };
  try {
    const fetcher = new Fetcher({ ...options, counters });
    const loader = new BlockLoader(fetcher, {
      store: await storeOf(options.store),
      integrityAttempts: options.integrityAttempts,
      onRetry: () => post({ id, type: 'retry', counters: delta() }),
    });
    // a block goes over (transferred); the promise resolves with the buffer
    // when the manager gives it back
    const deliver = (u8, at, fromStore) => new Promise((resolve) => {
      entry.returned.push(resolve);
      post({ id, type: 'block', buf: u8.buffer, length: u8.length, at, fromStore, counters: delta() }, [u8.buffer]);
    });
    await loader.run(job, deliver, ctrl.signal);
    post({ id, type: 'done', counters: delta() });
  } catch (e) {
    post({ id, type: 'error', error: errorToMessage(e), counters: delta() });
  } finally {
    jobs.delete(id);
  }
}

function onMessage(msg, post) {
  const entry = jobs.get(msg.id);
  if (msg.op === 'run') run(msg, post);
  else if (msg.op === 'free') entry?.returned.shift()?.(msg.buf); // in the order they were sent
  else if (msg.op === 'abort') entry?.ctrl.abort();
}

if (globalThis.process?.versions?.node && typeof globalThis.WorkerGlobalScope === 'undefined') {
  const { parentPort } = await import('node:worker_threads');
  const post = (m, transfer) => parentPort.postMessage(m, transfer);
  parentPort.on('message', (msg) => onMessage(msg, post));
  post({ ready: true, features: writeFeatures() });
} else {
  const post = (m, transfer) => self.postMessage(m, transfer);
  self.onmessage = ({ data }) => onMessage(data, post);
  post({ ready: true, features: writeFeatures() });
}
