/**
 * A column of short texts (customer ids, emails, phones, attributes) packed as UTF-8 in large chunks,
 * with one float per entry locating it: millions of customers without millions of JS strings, which
 * cost five to ten times their bytes in the heap and in the garbage collector's time. The memory is
 * shared, so worker threads read the column without a copy (`parts` / `TextColumn.view`).
 */

/** What a worker thread needs to read a column. */
export interface TextParts {
  chunks: SharedArrayBuffer[];
  pages: SharedArrayBuffer[];
  size: number;
  long: [number, string][];
}

const CHUNK = 1 << 22;
/** Entries longer than this go to a side table (they are rare: ids and identifiers are short). */
const MAX_PACKED = 0xffff;
const SPAN = 0x10000;
/** Entries per page of the index: pages are added, never copied, as the column grows. */
const PAGE_BITS = 16;
const PAGE = 1 << PAGE_BITS;
const PAGE_MASK = PAGE - 1;

export class TextColumn {
  private chunks: Buffer[] = [];
  private used = CHUNK;
  /** Per entry, in pages of PAGE: `(global byte offset) * 65536 + byte length`; 0 means absent. */
  private pages: Float64Array[] = [];
  private size = 0;
  private long = new Map<number, string>();

  /** A read-only view of a column another thread built. */
  static view(parts: TextParts): TextColumn {
    const column = new TextColumn();
    column.chunks = parts.chunks.map((c) => Buffer.from(c));
    column.pages = parts.pages.map((p) => new Float64Array(p));
    column.size = parts.size;
    column.long = new Map(parts.long);
    return column;
  }

  parts(): TextParts {
    return {
      chunks: this.chunks.map((c) => c.buffer as SharedArrayBuffer),
      pages: this.pages.map((p) => p.buffer as SharedArrayBuffer),
      size: this.size,
      long: [...this.long],
    };
  }

  static from(values: readonly (string | undefined)[]): TextColumn {
    const column = new TextColumn();
    for (const v of values) column.push(v);
    return column;
  }

  get length(): number {
    return this.size;
  }

  push(value: string | undefined): void {
    if ((this.size & PAGE_MASK) === 0) this.pages.push(new Float64Array(new SharedArrayBuffer(PAGE * 8)));
    this.size++;
    if (value !== undefined) this.set(this.size - 1, value);
  }

  /** Grows to n entries, the new ones absent. */
  resize(n: number): void {
    while (this.size < n) this.push(undefined);
  }

  has(i: number): boolean {
    return this.loc(i) !== 0;
  }

  private loc(i: number): number {
    return this.pages[i >>> PAGE_BITS]![i & PAGE_MASK]!;
  }

  get(i: number): string | undefined {
    const loc = this.loc(i);
    if (loc === 0) return undefined;
    const length = loc % SPAN;
    if (length === MAX_PACKED) return this.long.get(i);
    const start = (loc - length) / SPAN;
    const chunk = this.chunks[Math.floor(start / CHUNK)]!;
    const from = start % CHUNK;
    return chunk.toString('utf8', from, from + length);
  }

  /** The entry's UTF-8 bytes without decoding (a view: copy it to keep it). */
  bytes(i: number): Buffer | undefined {
    const loc = this.loc(i);
    if (loc === 0) return undefined;
    const length = loc % SPAN;
    if (length === MAX_PACKED) return Buffer.from(this.long.get(i)!, 'utf8');
    const start = (loc - length) / SPAN;
    const from = start % CHUNK;
    return this.chunks[Math.floor(start / CHUNK)]!.subarray(from, from + length);
  }

  /** Replaces entry i (an unchanged value costs nothing; a changed one leaves its old bytes behind). */
  set(i: number, value: string | undefined): void {
    if (value === undefined || value === '') {
      this.pages[i >>> PAGE_BITS]![i & PAGE_MASK] = 0;
      this.long.delete(i);
      return;
    }
    if (value.length * 3 > MAX_PACKED - 1 && Buffer.byteLength(value) >= MAX_PACKED) {
      this.long.set(i, value);
      this.pages[i >>> PAGE_BITS]![i & PAGE_MASK] = MAX_PACKED;
      return;
    }
    if (this.loc(i) !== 0 && this.get(i) === value) return;
    if (this.used + value.length * 3 > CHUNK) {
      this.chunks.push(Buffer.from(new SharedArrayBuffer(CHUNK)));
      this.used = 0;
    }
    const chunk = this.chunks.length - 1;
    const written = this.chunks[chunk]!.write(value, this.used, 'utf8');
    this.pages[i >>> PAGE_BITS]![i & PAGE_MASK] = (chunk * CHUNK + this.used) * SPAN + written;
    this.used += written;
  }

  toArray(): (string | undefined)[] {
    return Array.from({ length: this.size }, (_, i) => this.get(i));
  }

  /** Code-point order of entries i and j (UTF-8 byte order is code-point order), absent first. */
  compare(i: number, j: number): number {
    const a = this.loc(i);
    const b = this.loc(j);
    if (a % SPAN === MAX_PACKED || b % SPAN === MAX_PACKED) {
      const x = this.bytes(i);
      const y = this.bytes(j);
      if (!x || !y) return x ? 1 : y ? -1 : 0;
      return x.compare(y);
    }
    if (a === 0 || b === 0) return a !== 0 ? 1 : b !== 0 ? -1 : 0;
    // In place, without a view per comparison (ntile sorts millions of ids with this).
    const la = a % SPAN;
    const lb = b % SPAN;
    const sa = (a - la) / SPAN;
    const sb = (b - lb) / SPAN;
    const fa = sa % CHUNK;
    const fb = sb % CHUNK;
    return this.chunks[Math.floor(sa / CHUNK)]!.compare(
      this.chunks[Math.floor(sb / CHUNK)]!,
      fb,
      fb + lb,
      fa,
      fa + la,
    );
  }
}

/**
 * Customer index by id, over a TextColumn of the ids: open addressing on a typed array instead of a
 * Map of strings (which needs ~100 bytes per customer).
 */
export class TextIndex {
  private slots = new Int32Array(1 << 12);
  private count = 0;
  private readonly scratch = Buffer.allocUnsafe(1024);

  constructor(private readonly texts: TextColumn) {}

  get(id: string): number | undefined {
    const probe = this.encode(id);
    const mask = this.slots.length - 1;
    for (let s = hashOf(probe) & mask; ; s = (s + 1) & mask) {
      const v = this.slots[s]!;
      if (v === 0) return undefined;
      if (this.texts.bytes(v - 1)!.equals(probe)) return v - 1;
    }
  }

  /** Records that entry i of the column is this id (the caller checked it is not there yet). */
  add(i: number): void {
    if ((this.count + 1) * 2 > this.slots.length) this.grow();
    this.place(i, this.texts.bytes(i)!);
    this.count++;
  }

  private place(i: number, bytes: Buffer): void {
    const mask = this.slots.length - 1;
    let s = hashOf(bytes) & mask;
    while (this.slots[s] !== 0) s = (s + 1) & mask;
    this.slots[s] = i + 1;
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Int32Array(old.length * 2);
    for (const v of old) if (v !== 0) this.place(v - 1, this.texts.bytes(v - 1)!);
  }

  private encode(id: string): Buffer {
    if (id.length * 3 <= this.scratch.length) return this.scratch.subarray(0, this.scratch.write(id, 0));
    return Buffer.from(id, 'utf8');
  }
}

/** FNV-1a over bytes: spreads ids well enough for a table that compares on collision. */
function hashOf(bytes: Buffer): number {
  let h = 0x811c9dc5;
  for (let k = 0; k < bytes.length; k++) h = Math.imul(h ^ bytes[k]!, 0x01000193);
  return (h ^ (h >>> 15)) >>> 0;
}
