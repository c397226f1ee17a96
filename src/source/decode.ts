import { isUtf8 } from 'node:buffer';
import { Transform, type TransformCallback } from 'node:stream';
import iconv from 'iconv-lite';
import type { Encoding } from '../config/schema.js';
import { SourceError } from '../errors.js';

const EMPTY = Buffer.alloc(0);
const REPLACEMENT = '\ufffd';

/**
 * Bytes to text for the CSV parser, in the source's encoding. UTF-8 is checked a chunk at a time with
 * `isUtf8` (simdutf: many times faster than the parsing after it) and decoded as Node decodes it; bytes
 * that are not UTF-8 become U+FFFD, and `replaced` counts them until the reader finds the rows that
 * hold them (a row is never taken with them). latin1 and windows-1252 map every byte, through iconv-lite
 * (Node's own TextDecoder reads windows-1252 as latin1 in some versions).
 */
export class SourceDecoder extends Transform {
  /** U+FFFD characters in text from bytes that are not UTF-8, not yet claimed by a row. */
  replaced = 0;
  private first = true;
  /** The start of a character that the last chunk cut off (1 to 3 bytes). */
  private carry: Buffer = EMPTY;
  private readonly single: ReturnType<typeof iconv.getDecoder> | undefined;

  constructor(
    private readonly encoding: Encoding,
    /** What the bytes come from, and the config key of the encoding, for messages. */
    private readonly label: string,
    readonly configPath: string,
  ) {
    super({ readableObjectMode: true });
    this.single = encoding === 'utf-8' ? undefined : iconv.getDecoder(encoding);
  }

  override _transform(chunk: Buffer, _: BufferEncoding, done: TransformCallback): void {
    if (this.first) {
      this.first = false;
      const error = this.checkStart(chunk);
      if (error) return done(error);
    }
    const text = this.single ? this.single.write(chunk) : this.utf8(chunk);
    if (text) this.push(text);
    done();
  }

  override _flush(done: TransformCallback): void {
    // A character cut off by the end of the input.
    const text = this.carry.length > 0 ? this.piece(this.carry) : this.single?.end();
    this.carry = EMPTY;
    if (text) this.push(text);
    done();
  }

  /** A byte order mark that says the file is not in the configured encoding. */
  private checkStart(chunk: Buffer): SourceError | undefined {
    if ((chunk[0] === 0xff && chunk[1] === 0xfe) || (chunk[0] === 0xfe && chunk[1] === 0xff))
      return new SourceError(
        `${this.label}: is UTF-16 text (it starts with a UTF-16 byte order mark, as Excel's "Unicode text" files do)`,
        'save or export it as CSV in UTF-8 (in Excel: "CSV UTF-8"), or convert it: iconv -f UTF-16 -t UTF-8',
      );
    if (this.encoding !== 'utf-8' && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf)
      return new SourceError(
        `${this.label}: starts with a UTF-8 byte order mark, but ${this.configPath}.encoding is ${this.encoding}`,
        `remove ${this.configPath}.encoding (the file is UTF-8)`,
      );
    return undefined;
  }

  private utf8(chunk: Buffer): string {
    let text = '';
    let start = 0;
    if (this.carry.length > 0) {
      // The cut character: the carried bytes and the continuation bytes that start this chunk.
      const want = sequenceLength(this.carry[0]!);
      while (start < chunk.length && this.carry.length + start < want && (chunk[start]! & 0xc0) === 0x80)
        start++;
      const piece = Buffer.concat([this.carry, chunk.subarray(0, start)]);
      if (start === chunk.length && piece.length < want) {
        this.carry = piece;
        return '';
      }
      this.carry = EMPTY;
      text = this.piece(piece);
    }
    const end = completeEnd(chunk, start);
    if (end < chunk.length) this.carry = Buffer.from(chunk.subarray(end));
    return start === 0 && end === chunk.length
      ? this.piece(chunk)
      : text + this.piece(chunk.subarray(start, end));
  }

  /** Whole characters as text; invalid bytes as U+FFFD, counted. */
  private piece(bytes: Buffer): string {
    const text = bytes.toString('utf8');
    if (!isUtf8(bytes)) this.replaced += countReplacements(text);
    return text;
  }
}

/** The length of the UTF-8 sequence a lead byte starts (1 for ASCII and for bytes no sequence starts with). */
function sequenceLength(b: number): number {
  return b >= 0xf0 && b <= 0xf4 ? 4 : b >= 0xe0 && b < 0xf0 ? 3 : b >= 0xc2 && b < 0xe0 ? 2 : 1;
}

/** The end of the last whole character of a chunk: before a sequence the chunk cuts off, if any. */
function completeEnd(chunk: Buffer, from: number): number {
  const n = chunk.length;
  for (let p = n - 1; p >= from && p >= n - 4; p--) {
    const b = chunk[p]!;
    if ((b & 0xc0) === 0x80) continue;
    return sequenceLength(b) > n - p ? p : n;
  }
  return n;
}

export function countReplacements(text: string): number {
  let n = 0;
  for (let at = text.indexOf(REPLACEMENT); at !== -1; at = text.indexOf(REPLACEMENT, at + 1)) n++;
  return n;
}

/** Why a row with bytes that are not UTF-8 was left out, and what to do when the file is in another encoding. */
export const undecodableReason = (configPath: string): string =>
  `invalid UTF-8 (set ${configPath}.encoding if the file is latin1 or windows-1252)`;
