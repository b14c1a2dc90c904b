// store-opfs.mjs - the StreamWeightManager's cache in the Origin Private File
// System (browsers). Layout under navigator.storage.getDirectory():
//   NAME/blobs/KEY        a verified shard
//   NAME/blobs/KEY.part   a shard being downloaded (resumable): appended to, or
//                         written at offsets, by several download Workers at
//                         once when the pieces of one shard download in
//                         parallel (sync access handles in 'readwrite-unsafe'
//                         mode, Chromium 121+; elsewhere shards are not split)
//   NAME/models/ID.json   a model's record (its manifest)
// A .part file becomes KEY by move() (a rename) after its SHA-256 was
// checked, so a crash or reload never leaves a wrong KEY.
//
// In a Worker, partial files are written through a FileSystemSyncAccessHandle
// (synchronous, every byte on disk at once: a reload resumes from the last
// byte written). In a page (no sync handles) through createWritable(), whose
// bytes land in the file when it is closed: a reload mid-download resumes
// from the last closed writer (the manager closes it when a request fails).
//
// ---- the store interface (also store-fs.mjs, store-cache.mjs) ---------------
//   kind                                 'opfs' | 'cache' | 'fs'
//   stat(key)      -> { complete: bytes | null, partial: bytes }
//   openReader(key) -> { size, readInto(offset, dest) -> n, close() }   (complete blobs)
//   openWriter(key, { shared }) -> { size, positional, readInto(offset, dest)
//                        (bytes there when opened), write(u8) (append), writeAt(offset, u8)
//                        (positional writers anywhere; the others only at size),
//                        truncate(n), commit(), discard(), close() }
//                        shared: other writers may write the same file at once
//                        (at other offsets; only where sharedWrites() said so)
//   commit(key)    the partial file becomes KEY (every writer of it closed)
//   sharedWrites(features) -> may several writers write one partial file at
//                   once; features: what the download Workers found
//                   (writeFeatures() in download.mjs)
//   delete(key), blobs() -> [{ key, bytes, complete }]
//   getRecord(id), putRecord(id, obj), deleteRecord(id), records()
//   estimate() -> { usage, quota } | null, persist() -> bool
//   workerSpec() -> the openStore() arguments that open the same store in a
//                   Worker (the download Workers write shards there), or null

import { storeRecordName } from './store-common.mjs';

const PART = '.part';

const isNotFound = (e) => e?.name === 'NotFoundError' || e?.name === 'TypeError';

export class OpfsStore {
  static async open(name = 'stream-llm', { syncHandles = true } = {}) {
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle(name, { create: true });
    const store = new OpfsStore();
    store.kind = 'opfs';
    store.name = name;
    store.blobDir = await dir.getDirectoryHandle('blobs', { create: true });
    store.modelDir = await dir.getDirectoryHandle('models', { create: true });
    // sync access handles exist only in dedicated Workers
    store.sync = syncHandles && typeof FileSystemFileHandle !== 'undefined'
      && typeof FileSystemFileHandle.prototype.createSyncAccessHandle === 'function' && typeof window === 'undefined';
    return store;
  }

  workerSpec() { return { kind: 'opfs', name: this.name }; }

  // Shared writers need sync access handles in 'readwrite-unsafe' mode where
  // the writers run (a page has no sync handles: its writers replace the
  // whole file when they close, so two at once would lose bytes).
  sharedWrites(features) { return !!features?.syncHandleModes; }

  async #handle(name, create = false) {
    try {
      return await this.blobDir.getFileHandle(name, { create });
    } catch (e) {
      if (!create && isNotFound(e)) return null;
      throw e;
    }
  }

  async #size(name) {
    const h = await this.#handle(name);
    if (!h) return null;
    try {
      return (await h.getFile()).size;
    } catch {
      return null; // locked by a writer right now
    }
  }

  async stat(key) {
    return { complete: await this.#size(key), partial: (await this.#size(key + PART)) ?? 0 };
  }

  async openReader(key) {
    const h = await this.#handle(key);
    if (!h) throw new Error(`no cached blob ${key}`);
    if (this.sync) {
      // read-only sync handles share the file with other readers (newer browsers)
      try {
        const a = await h.createSyncAccessHandle({ mode: 'read-only' });
        return {
          size: a.getSize(),
          readInto: async (offset, dest) => a.read(dest, { at: offset }),
          close: async () => a.close(),
        };
      } catch {
        // fall through: read through the File
      }
    }
    const file = await h.getFile();
    return {
      size: file.size,
      async readInto(offset, dest) {
        const buf = new Uint8Array(await file.slice(offset, offset + dest.length).arrayBuffer());
        dest.set(buf);
        return buf.length;
      },
      close: async () => {},
    };
  }

  async openWriter(key, { shared = false } = {}) {
    const h = await this.#handle(key + PART, true);
    if (this.sync) {
      const a = await h.createSyncAccessHandle(shared ? { mode: 'readwrite-unsafe' } : undefined);
      let size = a.getSize();
      let open = true;
      const close = async () => {
        if (open) {
          open = false;
          a.flush();
          a.close();
        }
      };
      const writeAt = async (offset, u8) => {
        let done = 0;
        while (done < u8.length) done += a.write(u8.subarray(done), { at: offset + done });
        size = Math.max(size, offset + u8.length);
      };
      return {
        positional: true,
        get size() { return size; },
        readInto: async (offset, dest) => a.read(dest, { at: offset }),
        write: (u8) => writeAt(size, u8),
        writeAt,
        async truncate(n) {
          a.truncate(n);
          size = n;
        },
        commit: async () => {
          await close();
          await this.commit(key);
        },
        discard: async () => {
          await close();
          await this.#remove(key + PART);
        },
        close,
      };
    }
    // a page: createWritable (the only writer: its bytes replace the file
    // when it closes); readInto reads what the file held when it was opened
    const before = await h.getFile();
    let size = before.size;
    let w = await h.createWritable({ keepExistingData: true });
    await w.seek(size);
    const close = async () => {
      if (w) {
        const x = w;
        w = null;
        await x.close();
      }
    };
    const write = async (u8) => {
      await w.write(u8);
      size += u8.length;
    };
    return {
      positional: true,
      get size() { return size; },
      async readInto(offset, dest) {
        const buf = new Uint8Array(await before.slice(offset, offset + dest.length).arrayBuffer());
        dest.set(buf);
        return buf.length;
      },
      write,
      async writeAt(offset, u8) {
        if (offset === size) return write(u8);
        await w.write({ type: 'write', position: offset, data: u8 });
        size = Math.max(size, offset + u8.length);
        await w.seek(size); // appends go on at the end
      },
      async truncate(n) {
        await w.truncate(n);
        await w.seek(n);
        size = n;
      },
      commit: async () => {
        await close();
        await this.commit(key);
      },
      discard: async () => {
        if (w) {
          const x = w;
          w = null;
          await x.abort();
        }
        await this.#remove(key + PART);
      },
      close,
    };
  }

  // KEY.part -> KEY (every writer of it closed): move() where the browser
  // has it, else a copy through createWritable (which also lands whole or not
  // at all) and a delete.
  async commit(key) {
    const h = await this.#handle(key + PART);
    if (!h) throw new Error(`no partial download of ${key}`);
    await this.#remove(key);
    if (typeof h.move === 'function') {
      await h.move(key);
      return;
    }
    const to = await this.blobDir.getFileHandle(key, { create: true });
    const w = await to.createWritable();
    await (await h.getFile()).stream().pipeTo(w);
    await this.#remove(key + PART);
  }

  async #remove(name) {
    try {
      await this.blobDir.removeEntry(name);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  async delete(key) {
    await this.#remove(key);
    await this.#remove(key + PART);
  }

  async blobs() {
    const out = [];
    for await (const [name, h] of this.blobDir.entries()) {
      if (h.kind !== 'file') continue;
      let bytes = 0;
      try {
        bytes = (await h.getFile()).size;
      } catch {
        bytes = 0; // being written
      }
      const complete = !name.endsWith(PART);
      out.push({ key: complete ? name : name.slice(0, -PART.length), bytes, complete });
    }
    return out;
  }

  async getRecord(id) {
    try {
      const h = await this.modelDir.getFileHandle(storeRecordName(id));
      return JSON.parse(await (await h.getFile()).text());
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  // createWritable's bytes replace the file on close: a record is whole or absent
  async putRecord(id, record) {
    const h = await this.modelDir.getFileHandle(storeRecordName(id), { create: true });
    const w = await h.createWritable();
    await w.write(JSON.stringify(record));
    await w.close();
  }

  async deleteRecord(id) {
    try {
      await this.modelDir.removeEntry(storeRecordName(id));
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  async records() {
    const out = [];
    for await (const [, h] of this.modelDir.entries()) {
      if (h.kind !== 'file') continue;
      try {
        out.push(JSON.parse(await (await h.getFile()).text()));
      } catch {
        // being replaced, or damaged: not listed
      }
    }
    return out;
  }

  async estimate() { return navigator.storage.estimate ? navigator.storage.estimate() : null; }

  // Asks the browser not to evict the cache under storage pressure (a page
  // only: Workers have no persist()).
  async persist() { return navigator.storage.persist ? navigator.storage.persist() : false; }
}
