// gpu_env.mjs - what the WebGPU tests share: the software GPU they default
// to (SwiftShader's Vulkan driver from Debian's chromium package, unless
// VK_ICD_FILENAMES names another, e.g. lavapipe: see scripts/lavapipe.sh),
// and a loud skip (a failure under CI=true) when no WebGPU adapter exists.
import { existsSync } from 'node:fs';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (!process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES && existsSync(SWIFTSHADER_ICD))
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
process.env.XDG_RUNTIME_DIR ??= '/tmp';

const { requestDevice } = await import('../../web/engine/webgpu.mjs');

let probe = null;
// The adapter's facts, or null (with the reason in gpuMissing) when there is none.
export async function gpuInfo() {
  probe ??= requestDevice().then(({ info, device }) => {
    device.destroy?.();
    return { info };
  }, (e) => ({ error: e.message }));
  const r = await probe;
  return r.info ?? null;
}

export async function requireGpu(t) {
  if (await gpuInfo()) return true;
  const msg = `no WebGPU adapter (${(await probe).error}); install chromium (SwiftShader) and npm install`;
  if (process.env.CI === 'true') throw new Error(`CI=true: ${msg}`);
  console.error(`SKIP ${msg}`);
  t.skip(msg);
  return false;
}
