// store-fs.mjs - the StreamWeightManager's cache in a directory (Node): the
// same store interface as OPFS and the Cache API (see store-opfs.mjs for the
// interface). Layout:
//   DIR/blobs/KEY        a verified shard (complete)
//   DIR/blobs/KEY.part   a shard being downloaded (resumable): appended to, or
//                        written at offsets, by several writers at once when
//                        the pieces of one shard download in parallel (each
//                        Worker has its own descriptor; the bytes not written
//                        yet are a hole)
//   DIR/models/ID.json   the record of a model: its manifest and where it came from
// A shard becomes KEY only by rename after its SHA-256 was checked, so a
// crash leaves at most a .part file, never a wrong KEY.

import fs from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { storeRecordName, QuotaError } from './store-common.mjs';

const PART = '.part';

function isNoSpace(e) { return e && (e.code === 'ENOSPC' || e.code === 'EDQUOT'); }

export class FsStore {
  // dir: the cache directory (created). durable: fsync a shard before it is
  // renamed into place (survives power loss, not just a crash or kill).
  // quota: pretend the disk holds at most this many bytes for the store
  // (tests of the quota path); default: the file system's free space.
  constructor(dir, { durable = false, quota = null } = {}) {
    this.kind = 'fs';
    this.dir = dir;
    this.durable = durable;
    this.quota = quota;
    this.blobDir = path.join(dir, 'blobs');
    this.modelDir = path.join(dir, 'models');
    this.ready = null;
  }

  // What opens this store again in a Worker (openStore() arguments).
  workerSpec() { return { kind: 'fs', dir: this.dir, durable: this.durable, quota: this.quota }; }

  // Several writers (download Workers) may write one partial file at once.
  sharedWrites() { return true; }

  async #init() {
    this.ready ??= Promise.all([fs.mkdir(this.blobDir, { recursive: true }), fs.mkdir(this.modelDir, { recursive: true })]);
    await this.ready;
  }

  #blob(key) { return path.join(this.blobDir, key); }

  // { complete: bytes or null, partial: bytes of KEY.part (0 if none) }
  async stat(key) {
    await this.#init();
    const size = async (p) => {
      try {
        return (await fs.stat(p)).size;
      } catch (e) {
        if (e.code === 'ENOENT') return null;
        throw e;
      }
    };
    return { complete: await size(this.#blob(key)), partial: (await size(this.#blob(key) + PART)) ?? 0 };
  }

  // A reader of a complete blob: { size, readInto(offset, dest) -> n, close() }.
  async openReader(key) {
    await this.#init();
    const fh = await fs.open(this.#blob(key), 'r');
    const { size } = await fh.stat();
    return {
      size,
      async readInto(offset, dest) {
        let done = 0;
        while (done < dest.length) {
          const { bytesRead } = await fh.read(dest, done, dest.length - done, offset + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return done;
      },
      close: () => fh.close(),
    };
  }

  // The writer of KEY.part (created if missing): { size, positional: true,
  // readInto(offset, dest), write(u8) (appends), writeAt(offset, u8),
  // truncate(n), commit() (rename to KEY), discard() (delete), close() (keep
  // for a later resume) }. Other writers may have the file open at once
  // (the { shared } option of the interface: always so here): positional
  // writes need no lock; size is what this writer knows of.
  async openWriter(key) {
    await this.#init();
    const file = this.#blob(key) + PART;
    // not 'a': with O_APPEND every write would go to the end, whatever its offset
    const fh = await fs.open(file, fsConstants.O_RDWR | fsConstants.O_CREAT);
    let size = (await fh.stat()).size;
    const store = this;
    let closed = false;
    const close = async () => {
      if (!closed) {
        closed = true;
        await fh.close();
      }
    };
    const writeAt = async (offset, u8) => {
      if (store.quota !== null && (await store.#used()) + u8.length > store.quota)
        throw new QuotaError(`the model cache in ${store.dir} is full (quota ${store.quota} bytes)`);
      try {
        for (let done = 0; done < u8.length;) {
          const { bytesWritten } = await fh.write(u8, done, u8.length - done, offset + done);
          done += bytesWritten;
        }
        size = Math.max(size, offset + u8.length);
      } catch (e) {
        if (isNoSpace(e)) throw new QuotaError(`no space left for the model cache in ${store.dir}`, { cause: e });
        throw e;
      }
    };
    return {
      positional: true,
      get size() { return size; },
      async readInto(offset, dest) {
        let done = 0;
        while (done < dest.length) {
          const { bytesRead } = await fh.read(dest, done, dest.length - done, offset + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return done;
      },
      write: (u8) => writeAt(size, u8),
      writeAt,
      async truncate(n) {
        await fh.truncate(n);
        size = n;
      },
      async commit() {
        await close();
        await store.commit(key);
      },
      async discard() {
        await close();
        await fs.rm(file, { force: true });
      },
      close,
    };
  }

  // KEY.part -> KEY, once every writer of it closed (pieces of one shard
  // written by several Workers: the manager renames when all are done).
  async commit(key) {
    await this.#init();
    const file = this.#blob(key) + PART;
    if (this.durable) {
      // fsync of any descriptor flushes the file's data, whoever wrote it
      const fh = await fs.open(file, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    await fs.rename(file, this.#blob(key));
  }

  async delete(key) {
    await this.#init();
    await fs.rm(this.#blob(key), { force: true });
    await fs.rm(this.#blob(key) + PART, { force: true });
  }

  // Every blob: [{ key, bytes, complete }] (a key with both a blob and a
  // .part appears twice).
  async blobs() {
    await this.#init();
    const out = [];
    for (const name of await fs.readdir(this.blobDir)) {
      let st;
      try {
        st = await fs.stat(path.join(this.blobDir, name));
      } catch {
        continue;
      }
      const complete = !name.endsWith(PART);
      out.push({ key: complete ? name : name.slice(0, -PART.length), bytes: st.size, complete });
    }
    return out;
  }

  async getRecord(id) {
    await this.#init();
    try {
      return JSON.parse(await fs.readFile(path.join(this.modelDir, storeRecordName(id)), 'utf8'));
    } catch (e) {
      if (e.code === 'ENOENT') return null;
      throw e;
    }
  }

  // Written to a temporary name, then renamed: a record is whole or absent.
  async putRecord(id, record) {
    await this.#init();
    const file = path.join(this.modelDir, storeRecordName(id));
    await fs.writeFile(`${file}.tmp`, JSON.stringify(record));
    await fs.rename(`${file}.tmp`, file);
  }

  async deleteRecord(id) {
    await this.#init();
    await fs.rm(path.join(this.modelDir, storeRecordName(id)), { force: true });
  }

  async records() {
    await this.#init();
    const out = [];
    for (const name of await fs.readdir(this.modelDir)) {
      if (!name.endsWith('.json')) continue;
      try {
        out.push(JSON.parse(await fs.readFile(path.join(this.modelDir, name), 'utf8')));
      } catch {
        // a record being replaced right now, or damaged: not listed
      }
    }
    return out;
  }

  // { usage, quota } like navigator.storage.estimate(): usage is what the
  // store holds, quota what it may hold (usage + free space, or the quota
  // given to the constructor).
  async #used() {
    let usage = 0;
    for (const b of await this.blobs()) usage += b.bytes;
    return usage;
  }

  async estimate() {
    const usage = await this.#used();
    if (this.quota !== null) return { usage, quota: this.quota };
    const st = await fs.statfs(this.dir);
    return { usage, quota: usage + st.bavail * st.bsize };
  }

  async persist() { return true; }
}

// fetch() for file: URLs (Node's fetch has none), enough for the manager:
// GET with an optional "Range: bytes=A-B" / "bytes=A-" -> 200 or 206 with
// Content-Range, 404 for a missing file, 416 for a range outside it.
export async function fileFetch(url, init = {}) {
  const { fileURLToPath } = await import('node:url');
  const { createReadStream } = await import('node:fs');
  const { Readable } = await import('node:stream');
  const file = fileURLToPath(url);
  let size;
  try {
    const st = await fs.stat(file);
    if (!st.isFile()) return new Response(`${file} is not a file`, { status: 404 });
    size = st.size;
  } catch (e) {
    return new Response(`${file}: ${e.code ?? e.message}`, { status: 404 });
  }
  const headers = new Headers(init.headers ?? {});
  const range = /^bytes=(\d+)-(\d*)$/.exec(headers.get('range') ?? '');
  let start = 0;
  let end = size - 1;
  let status = 200;
  const out = { 'content-type': 'application/octet-stream' };
  if (range) {
    start = Number(range[1]);
    if (range[2] !== '') end = Math.min(end, Number(range[2]));
    if (start >= size || start > end) return new Response('', { status: 416, headers: { 'content-range': `bytes */${size}` } });
    status = 206;
    out['content-range'] = `bytes ${start}-${end}/${size}`;
  }
  out['content-length'] = String(end - start + 1);
  if (end < start) return new Response(new Uint8Array(0), { status, headers: out }); // an empty file
  const stream = createReadStream(file, { start, end, highWaterMark: 1 << 20, signal: init.signal ?? undefined });
  return new Response(Readable.toWeb(stream), { status, headers: out });
}
