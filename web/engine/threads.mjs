// threads.mjs - worker threads for the wasm CPU backend. The threaded build
// (build/wasm/engine-mt.wasm) imports one shared WebAssembly.Memory; N
// Workers instantiate the same module on it and serve the C thread pool
// (src/wasm/threadpool_wasm.c), so matrix products split over N + 1 threads.
// Works in Node (worker_threads) and in browsers when the page is
// cross-origin isolated (SharedArrayBuffer); elsewhere the engine runs on
// one thread.

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

// Whether shared memory and Workers are usable here.
export function threadsSupported() {
  if (typeof SharedArrayBuffer === 'undefined' || typeof WebAssembly.Memory !== 'function') return false;
  return isNode || (globalThis.crossOriginIsolated === true && typeof Worker !== 'undefined');
}

// The number of CPUs (threads worth running, the caller included).
export async function cpuCount() {
  if (isNode) {
    const os = await import('node:os');
    return os.availableParallelism?.() ?? os.cpus().length;
  }
  return globalThis.navigator?.hardwareConcurrency || 1;
}

// Whether a compiled module is the threaded build (it imports its memory).
export const importsMemory = (module) => WebAssembly.Module.imports(module).some((i) => i.kind === 'memory');

// A shared memory for the threaded build: grows from `pages` on demand up to 4 GiB.
export const sharedMemory = (pages) => new WebAssembly.Memory({ initial: pages, maximum: 65536, shared: true });

async function spawn(data) {
  const url = new URL('./cpu-worker.mjs', import.meta.url);
  if (isNode) {
    const { Worker } = await import('node:worker_threads');
    /* no inherited Node options (e.g. --input-type breaks a worker file);
       V8 flags are process-wide anyway */
    const w = new Worker(url, { workerData: data, execArgv: [] });
    /* unref after each listener (adding one refs the worker again): an idle
       worker must not keep the process alive */
    w.unref();
    return {
      onMessage: (f) => { w.on('message', f); w.unref(); },
      onError: (f) => { w.on('error', f); w.unref(); },
      terminate: () => w.terminate(),
    };
  }
  const w = new Worker(url, { type: 'module' });
  w.postMessage(data);
  return {
    onMessage: (f) => w.addEventListener('message', (e) => f(e.data)),
    onError: (f) => w.addEventListener('error', (e) => f(e)),
    terminate: () => w.terminate(),
  };
}

// Starts n worker threads for an instantiated threaded module (mod: the
// EngineModule; module: its WebAssembly.Module). Resolves once they run, to
// { count, stop() }; count may be smaller than n (memory for stacks).
export async function startWorkers(mod, module, n, { timeoutMs = 20000 } = {}) {
  const ex = mod.exports;
  const count = ex.cpu_threads_prepare(n);
  const workers = [];
  let failure = null, started = false;
  for (let i = 0; i < count; i++) {
    const w = await spawn({ module, memory: mod.memory, index: i });
    // after the start, a failure also makes the engine's next call throw
    // (src/wasm/threadpool_wasm.c): say why here
    const fail = (msg) => { if (started) console.error(`stream-llm: ${msg}`); else failure ??= msg; };
    w.onMessage((m) => { if (m?.error) fail(m.error); });
    w.onError((e) => fail(`cpu worker ${i}: ${e.message ?? e}`));
    workers.push(w);
  }
  const t0 = Date.now();
  while (ex.cpu_threads_running() < count && !failure) {
    if (Date.now() - t0 > timeoutMs) failure = `only ${ex.cpu_threads_running()} of ${count} cpu workers started`;
    else await new Promise((r) => setTimeout(r, 2));
  }
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    ex.cpu_threads_stop(); // workers leave cpu_worker_run and end
    for (const w of workers) w.terminate();
  };
  // Node waits for workers at exit, and one waiting in wasm does not notice
  // termination: release them once nothing else is left to do.
  if (isNode) process.once('beforeExit', stop);
  if (failure) {
    stop();
    throw new Error(failure);
  }
  started = true;
  return { count, stop };
}
