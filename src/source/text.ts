/**
 * A column of short texts (customer ids, emails, phones, attributes) packed as UTF-8 in large chunks,
 * with five bytes per entry locating it (a 32-bit offset and an 8-bit length): millions of customers
 * without millions of JS strings, which cost five to ten times their bytes in the heap and in the
 * garbage collector's time. A column of few distinct values (countries, brands, flags) keeps one byte
 * per entry instead, a code into its dictionary, until it meets more than DICTIONARY values. The memory
 * is shared, so worker threads read the column without a copy (`parts` / `TextColumn.view`).
 */

/** What a worker thread needs to read a column. */
export interface TextParts {
  chunks: SharedArrayBuffer[];
  starts: SharedArrayBuffer[];
  lengths: SharedArrayBuffer[];
  size: number;
  long: [number, string][];
  /** The values while the column is a dictionary (then `lengths` hold codes, 1-based, and nothing else is used). */
  dictionary?: string[];
}

const CHUNK = 1 << 22;
/** The offsets are 32-bit: a column holds up to 4 GB of text. */
const MAX_CHUNKS = 2 ** 32 / CHUNK;
/** A length of LONG: the entry is in a side table (rare: ids and identifiers are short). */
const LONG = 0xff;
/** Entries per page of the index: pages are added, never copied, as the column grows. */
const PAGE_BITS = 16;
const PAGE = 1 << PAGE_BITS;
const PAGE_MASK = PAGE - 1;
const EMPTY = new Uint8Array(0);
/** Distinct values a dictionary column holds before it is packed (codes are bytes; 0 is absent). */
const DICTIONARY = 255;

export class TextColumn {
  private chunks: Buffer[] = [];
  private used = CHUNK;
  /** Per entry, in pages of PAGE: the byte offset in the column, and the byte length (0: absent). */
  private starts: Uint32Array[] = [];
  private lengths: Uint8Array[] = [];
  private size = 0;
  private long = new Map<number, string>();
  /** Dictionary mode: the values by code - 1, their bytes, and their codes; undefined once packed. */
  private dictionary: string[] | undefined = [];
  private dictionaryBytes: Buffer[] = [];
  private codes = new Map<string, number>();

  /** A read-only view of a column another thread built. */
  static view(parts: TextParts): TextColumn {
    const column = new TextColumn();
    column.chunks = parts.chunks.map((c) => Buffer.from(c));
    column.starts = parts.starts.map((p) => new Uint32Array(p));
    column.lengths = parts.lengths.map((p) => new Uint8Array(p));
    column.size = parts.size;
    column.long = new Map(parts.long);
    column.dictionary = parts.dictionary;
    column.dictionaryBytes = (parts.dictionary ?? []).map((v) => Buffer.from(v, 'utf8'));
    return column;
  }

  parts(): TextParts {
    return {
      chunks: this.chunks.map((c) => c.buffer as SharedArrayBuffer),
      starts: this.starts.map((p) => p.buffer as SharedArrayBuffer),
      lengths: this.lengths.map((p) => p.buffer as SharedArrayBuffer),
      size: this.size,
      long: [...this.long],
      ...(this.dictionary ? { dictionary: this.dictionary } : {}),
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
    if ((this.size & PAGE_MASK) === 0) {
      if (!this.dictionary) this.starts.push(new Uint32Array(new SharedArrayBuffer(PAGE * 4)));
      this.lengths.push(new Uint8Array(new SharedArrayBuffer(PAGE)));
    }
    this.size++;
    if (value !== undefined) this.set(this.size - 1, value);
  }

  /** Grows to n entries, the new ones absent. */
  resize(n: number): void {
    while (this.size < n) this.push(undefined);
  }

  has(i: number): boolean {
    return this.lengths[i >>> PAGE_BITS]![i & PAGE_MASK] !== 0;
  }

  get(i: number): string | undefined {
    const length = this.lengths[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    if (length === 0) return undefined;
    if (this.dictionary) return this.dictionary[length - 1];
    if (length === LONG) return this.long.get(i);
    const start = this.starts[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    const from = start % CHUNK;
    return this.chunks[(start - from) / CHUNK]!.toString('utf8', from, from + length);
  }

  /** The entry's UTF-8 bytes without decoding (a view: copy it to keep it). */
  bytes(i: number): Buffer | undefined {
    const length = this.lengths[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    if (length === 0) return undefined;
    if (this.dictionary) return this.dictionaryBytes[length - 1];
    if (length === LONG) return Buffer.from(this.long.get(i)!, 'utf8');
    const start = this.starts[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    const from = start % CHUNK;
    return this.chunks[(start - from) / CHUNK]!.subarray(from, from + length);
  }

  /** Replaces entry i (an unchanged value costs nothing; a changed one leaves its old bytes behind). */
  set(i: number, value: string | undefined): void {
    const page = i >>> PAGE_BITS;
    const at = i & PAGE_MASK;
    if (value === undefined || value === '') {
      this.lengths[page]![at] = 0;
      this.long.delete(i);
      return;
    }
    if (this.dictionary) {
      let code = this.codes.get(value);
      if (code === undefined && this.dictionary.length < DICTIONARY) {
        // A copy: a parser's value can be a slice that keeps its whole input chunk alive.
        value = Buffer.from(value, 'utf8').toString('utf8');
        code = this.dictionary.push(value);
        this.codes.set(value, code);
        this.dictionaryBytes.push(Buffer.from(value, 'utf8'));
      }
      if (code !== undefined) {
        this.lengths[page]![at] = code;
        return;
      }
      this.pack();
    }
    if (value.length * 3 >= LONG && Buffer.byteLength(value) >= LONG) {
      this.long.set(i, Buffer.from(value, 'utf8').toString('utf8'));
      this.lengths[page]![at] = LONG;
      return;
    }
    if (this.lengths[page]![at] !== 0 && this.get(i) === value) return;
    if (this.used + value.length * 3 > CHUNK) {
      if (this.chunks.length === MAX_CHUNKS)
        throw new RangeError('a text column of the source holds more than 4 GB: split the source');
      this.chunks.push(Buffer.from(new SharedArrayBuffer(CHUNK)));
      this.used = 0;
    }
    const chunk = this.chunks.length - 1;
    const written = writeUtf8(this.chunks[chunk]!, value, this.used);
    this.starts[page]![at] = chunk * CHUNK + this.used;
    this.lengths[page]![at] = written;
    this.used += written;
  }

  /** Whether entry i is exactly these bytes, compared in place. */
  matches(i: number, bytes: Uint8Array, length: number): boolean {
    const own = this.lengths[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    if (this.dictionary || own === LONG) return this.bytes(i)?.equals(bytes.subarray(0, length)) ?? false;
    if (own !== length || own === 0) return false;
    const start = this.starts[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    const from = start % CHUNK;
    const chunk = this.chunks[(start - from) / CHUNK]!;
    for (let k = 0; k < length; k++) if (chunk[from + k] !== bytes[k]) return false;
    return true;
  }

  /** Whether entry i is exactly this ASCII text (every code below 0x80), compared in place. */
  matchesAscii(i: number, text: string): boolean {
    const own = this.lengths[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    if (this.dictionary || own === LONG) return this.get(i) === text;
    if (own !== text.length || own === 0) return false;
    const start = this.starts[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    const from = start % CHUNK;
    const chunk = this.chunks[(start - from) / CHUNK]!;
    for (let k = 0; k < own; k++) if (chunk[from + k] !== text.charCodeAt(k)) return false;
    return true;
  }

  /** `read(bytes, from, to)` over entry i's bytes in place, without a Buffer per entry (empty when absent). */
  read<T>(i: number, read: (bytes: Uint8Array, from: number, to: number) => T): T {
    const length = this.lengths[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    if (length !== 0 && (this.dictionary || length === LONG)) {
      const bytes = this.bytes(i)!;
      return read(bytes, 0, bytes.length);
    }
    const start = length === 0 ? 0 : this.starts[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    const from = start % CHUNK;
    return read(this.chunks[(start - from) / CHUNK] ?? EMPTY, from, from + length);
  }

  /** `visit(bytes, from, to, i)` over entries [first, end)'s bytes in place, in order: `read` in bulk. */
  each(
    visit: (bytes: Uint8Array, from: number, to: number, i: number) => void,
    first = 0,
    end = this.size,
  ): void {
    for (let i = first; i < end; i++) {
      const length = this.lengths[i >>> PAGE_BITS]![i & PAGE_MASK]!;
      if (length === 0) visit(EMPTY, 0, 0, i);
      else if (this.dictionary || length === LONG) {
        const bytes = this.bytes(i)!;
        visit(bytes, 0, bytes.length, i);
      } else {
        const start = this.starts[i >>> PAGE_BITS]![i & PAGE_MASK]!;
        const from = start % CHUNK;
        visit(this.chunks[(start - from) / CHUNK]!, from, from + length, i);
      }
    }
  }

  /** `hashOf` entry i's bytes, read in place (0 bytes when absent). */
  hash(i: number): number {
    const length = this.lengths[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    if (length !== 0 && (this.dictionary || length === LONG)) {
      const bytes = this.bytes(i)!;
      return hashOf(bytes, 0, bytes.length);
    }
    const start = length === 0 ? 0 : this.starts[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    const from = start % CHUNK;
    return hashOf(this.chunks[(start - from) / CHUNK] ?? EMPTY, from, from + length);
  }

  /** Leaves dictionary mode: every entry written out as packed text. */
  private pack(): void {
    const dictionary = this.dictionary!;
    this.dictionary = undefined;
    this.dictionaryBytes = [];
    this.codes = new Map();
    this.starts = this.lengths.map(() => new Uint32Array(new SharedArrayBuffer(PAGE * 4)));
    for (let i = 0; i < this.size; i++) {
      const code = this.lengths[i >>> PAGE_BITS]![i & PAGE_MASK]!;
      if (code === 0) continue;
      this.lengths[i >>> PAGE_BITS]![i & PAGE_MASK] = 0;
      this.set(i, dictionary[code - 1]);
    }
  }

  /** The entries at these indexes, in their order: a new column over the same bytes (nothing is copied). */
  select(indexes: ArrayLike<number>): TextColumn {
    const column = new TextColumn();
    // Own arrays of the shared chunks: a later set() on either column writes to a chunk of its own.
    column.chunks = [...this.chunks];
    column.dictionary = this.dictionary && [...this.dictionary];
    column.dictionaryBytes = [...this.dictionaryBytes];
    column.codes = new Map(this.codes);
    for (let k = 0; k < indexes.length; k++) {
      const i = indexes[k]!;
      column.push(undefined);
      const length = this.lengths[i >>> PAGE_BITS]![i & PAGE_MASK]!;
      column.lengths[k >>> PAGE_BITS]![k & PAGE_MASK] = length;
      if (this.dictionary || length === 0) continue;
      column.starts[k >>> PAGE_BITS]![k & PAGE_MASK] = this.starts[i >>> PAGE_BITS]![i & PAGE_MASK]!;
      if (length === LONG) column.long.set(k, this.long.get(i)!);
    }
    return column;
  }

  toArray(): (string | undefined)[] {
    return Array.from({ length: this.size }, (_, i) => this.get(i));
  }

  /** Code-point order of entries i and j (UTF-8 byte order is code-point order), absent first. */
  compare(i: number, j: number): number {
    const la = this.lengths[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    const lb = this.lengths[j >>> PAGE_BITS]![j & PAGE_MASK]!;
    if (la === 0 || lb === 0) return la !== 0 ? 1 : lb !== 0 ? -1 : 0;
    if (this.dictionary || la === LONG || lb === LONG) return this.bytes(i)!.compare(this.bytes(j)!);
    // In place, without a view per comparison (ntile sorts millions of ids with this).
    const sa = this.starts[i >>> PAGE_BITS]![i & PAGE_MASK]!;
    const sb = this.starts[j >>> PAGE_BITS]![j & PAGE_MASK]!;
    const fa = sa % CHUNK;
    const fb = sb % CHUNK;
    return this.chunks[(sa - fa) / CHUNK]!.compare(this.chunks[(sb - fb) / CHUNK]!, fb, fb + lb, fa, fa + la);
  }
}

/**
 * Customer index by id, over a TextColumn of the ids: open addressing on a typed array instead of a
 * Map of strings (which needs ~100 bytes per customer). A byte of each id's hash beside every slot
 * settles most probes without reading the column.
 */
export class TextIndex {
  private slots = new Int32Array(1 << 12);
  private tags = new Uint8Array(1 << 12);
  private count = 0;
  private scratch = Buffer.allocUnsafe(1024);
  /** The hash of the id the last `get` looked up: `add` takes it for an id just found missing. */
  lastHash = 0;

  constructor(private readonly texts: TextColumn) {}

  get(id: string): number | undefined {
    // ASCII ids (nearly all) are hashed and compared from the string; others through their UTF-8.
    let h = hashOfAscii(id);
    const ascii = h >= 0;
    const length = ascii ? id.length : this.encode(id);
    if (!ascii) h = hashOf(this.scratch, 0, length);
    this.lastHash = h;
    const tag = h >>> 24;
    const mask = this.slots.length - 1;
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const v = this.slots[s]!;
      if (v === 0) return undefined;
      if (
        this.tags[s] === tag &&
        (ascii ? this.texts.matchesAscii(v - 1, id) : this.texts.matches(v - 1, this.scratch, length))
      )
        return v - 1;
    }
  }

  /**
   * Records that entry i of the column is this id (the caller checked it is not there yet); `hash` is its
   * hash when known (`lastHash` after a `get` of the same id).
   */
  add(i: number, hash = this.texts.hash(i)): void {
    // Up to 3/4 full: linear probing stays short, and the table is half the size of a 1/2 bound.
    if ((this.count + 1) * 4 > this.slots.length * 3) this.resize(this.slots.length * 2);
    this.place(i, hash);
    this.count++;
  }

  /** Makes room for about n ids in all at once, instead of doubling (and rehashing) on the way. */
  reserve(n: number): void {
    let size = this.slots.length;
    while (n * 4 > size * 3) size *= 2;
    if (size > this.slots.length) this.resize(size);
  }

  private place(i: number, h: number): void {
    const mask = this.slots.length - 1;
    let s = h & mask;
    while (this.slots[s] !== 0) s = (s + 1) & mask;
    this.slots[s] = i + 1;
    this.tags[s] = h >>> 24;
  }

  private resize(size: number): void {
    const old = this.slots;
    this.slots = new Int32Array(size);
    this.tags = new Uint8Array(size);
    for (const v of old) if (v !== 0) this.place(v - 1, this.texts.hash(v - 1));
  }

  /** Writes the id's UTF-8 into the scratch buffer; returns its length. */
  private encode(id: string): number {
    if (id.length * 3 > this.scratch.length) this.scratch = Buffer.allocUnsafe(id.length * 3);
    return this.scratch.write(id, 0);
  }
}

/** Writes a value's UTF-8 at `at`: short ASCII (most ids and identifiers) in JS, without a native call. */
function writeUtf8(into: Buffer, value: string, at: number): number {
  if (value.length <= 64) {
    let k = 0;
    for (; k < value.length; k++) {
      const c = value.charCodeAt(k);
      if (c >= 0x80) break;
      into[at + k] = c;
    }
    if (k === value.length) return k;
  }
  return into.write(value, at, 'utf8');
}

/** FNV-1a over bytes: spreads ids well enough for a table that compares on collision. */
function hashOf(bytes: Uint8Array, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let k = from; k < to; k++) h = Math.imul(h ^ bytes[k]!, 0x01000193);
  return (h ^ (h >>> 15)) >>> 0;
}

/** `hashOf` the UTF-8 of a short ASCII text, read from the string; -1 when it is not one (then encode it). */
function hashOfAscii(text: string): number {
  if (text.length > 64) return -1;
  let h = 0x811c9dc5;
  for (let k = 0; k < text.length; k++) {
    const c = text.charCodeAt(k);
    if (c >= 0x80) return -1;
    h = Math.imul(h ^ c, 0x01000193);
  }
  return (h ^ (h >>> 15)) >>> 0;
}
