// weights_worker.mjs - the module Worker of the StreamWeightManager browser
// test: runs weights_ops.mjs's operations on messages { id, op, args } and
// answers { id, result } or { id, error }.
import { ops } from './weights_ops.mjs';

self.onmessage = async ({ data: { id, op, args } }) => {
  try {
    self.postMessage({ id, result: await ops[op](args) });
  } catch (e) {
    self.postMessage({ id, error: `${e.name}: ${e.message}` });
  }
};
self.postMessage({ ready: true });
