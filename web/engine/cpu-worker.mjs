// cpu-worker.mjs - one worker thread of the wasm CPU backend (threads.mjs
// starts them). It instantiates engine-mt.wasm on the engine's shared memory
// and calls cpu_worker_run(index), which serves the C thread pool's tasks
// (src/wasm/threadpool_wasm.c) until cpu_threads_stop(). Runs as a Node
// worker_threads Worker or as a browser module Worker.

const WASI_ENOSYS = 52;

// Imports: the shared memory, and stand-ins for every function import (a
// worker only runs compute tasks; it never calls the host).
function workerImports(module, memory) {
  const imports = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    imports[imp.module] ??= {};
    if (imp.kind === 'memory') imports[imp.module][imp.name] = memory;
    else if (imp.kind === 'function') {
      imports[imp.module][imp.name] = imp.module === 'wasi_snapshot_preview1' ? () => WASI_ENOSYS : () => {
        throw new Error(`cpu worker: engine called ${imp.module}.${imp.name}`);
      };
    }
  }
  return imports;
}

function run({ module, memory, index }, post) {
  let instance = null;
  try {
    instance = new WebAssembly.Instance(module, workerImports(module, memory));
    instance.exports.cpu_worker_run(index); // returns after cpu_threads_stop()
    post({ done: index });
  } catch (e) {
    // A trap mid-task: tell the pool, whose caller would otherwise wait for
    // this worker forever (its sl_pool_run traps instead).
    instance?.exports.cpu_worker_failed?.(index);
    post({ error: `cpu worker ${index}: ${e.message}` });
  }
}

if (typeof process !== 'undefined' && process.versions?.node) {
  const { parentPort, workerData } = await import('node:worker_threads');
  run(workerData, (m) => parentPort.postMessage(m));
} else {
  self.onmessage = (e) => run(e.data, (m) => self.postMessage(m));
}
