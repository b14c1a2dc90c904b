// sha256-worker.mjs - a Worker (browser module Worker or Node worker_thread)
// that hashes for the StreamWeightManager off its thread (see HashPool in
// sha256.mjs). It says { ready: true } once listening. Messages in: { op: 'update', id, buf (SharedArrayBuffer),
// offset, length, seq } and { op: 'digest', id, seq }; out: { seq } after an
// update, { seq, hex } after a digest. Hash states are kept by id; one id's
// messages arrive in order, so its bytes are hashed in order.
import { newSha256 } from './sha256.mjs';

const states = new Map();

async function handle(msg, post) {
  let h = states.get(msg.id);
  if (!h) {
    h = await newSha256();
    states.set(msg.id, h);
  }
  if (msg.op === 'update') {
    h.update(new Uint8Array(msg.buf, msg.offset, msg.length));
    post({ seq: msg.seq });
  } else if (msg.op === 'digest') {
    states.delete(msg.id);
    post({ seq: msg.seq, hex: h.digestHex() });
  }
}

// Messages are handled one at a time, in arrival order (newSha256 is async
// the first time).
let chain = Promise.resolve();
function onMessage(msg, post) {
  chain = chain.then(() => handle(msg, post)).catch((e) => post({ seq: msg.seq, error: String(e) }));
}

if (globalThis.process?.versions?.node && typeof globalThis.WorkerGlobalScope === 'undefined') {
  const { parentPort } = await import('node:worker_threads');
  parentPort.on('message', (msg) => onMessage(msg, (m) => parentPort.postMessage(m)));
  parentPort.postMessage({ ready: true });
} else {
  self.onmessage = ({ data }) => onMessage(data, (m) => self.postMessage(m));
  self.postMessage({ ready: true });
}
