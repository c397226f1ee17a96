import { createWriteStream } from 'node:fs';
import { once } from 'node:events';

/**
 * Precomputed scores for the plan benchmark: `customer_id,r,f,m,email,phone,country` (and, with
 * `names`, `first_name,last_name`), one row per customer, identifiers in the untidy forms shops export
 * (case, spaces, Gmail dots and tags, phone punctuation, names in any case with stray spaces). The second file is the same customers a day later: `changedShare` of them have a
 * different R score, so most of those move to another segment; `arriving` of them are only in the second file
 * and `leaving` only in the first.
 */
export async function writeScores(
  first: string,
  second: string,
  customers: number,
  options: {
    seed?: number;
    changedShare?: number;
    names?: boolean;
    /** Shares of customers only in the second file (arrived) and only in the first (left). */
    arriving?: number;
    leaving?: number;
  } = {},
): Promise<{ changed: number }> {
  let state = options.seed ?? 11;
  // xorshift32: fast, deterministic, good enough for test data.
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
  const changedShare = options.changedShare ?? 0.01;
  const a = createWriteStream(first);
  const b = createWriteStream(second);
  const header = `customer_id,r,f,m,email,phone,country${options.names ? ',first_name,last_name' : ''}\n`;
  let chunkA = header;
  let chunkB = header;
  let changed = 0;
  const names = ['anna', 'ben', 'chloe', 'dev', 'emma', 'felix', 'grace', 'hugo', 'iris', 'jack'];
  // Given names and family names repeat, as they do in a customer base (about a thousand and ten thousand kinds).
  const given = (k: number) =>
    `${names[k % names.length]}${k >= names.length ? String.fromCharCode(97 + (k % 26)) + (k >> 4) : ''}`;
  const family = (k: number) => `Family${k}son`;
  const domains = ['example.com', 'gmail.com', 'Example.org', 'shop-mail.net', 'googlemail.com'];
  // Area codes in service, so that phone numbers pass the validity check as real ones do.
  const areas = [
    201, 202, 206, 212, 213, 214, 305, 310, 312, 404, 415, 503, 512, 602, 617, 646, 702, 713, 718, 805, 917,
    919,
  ];
  for (let i = 0; i < customers; i++) {
    const name = names[Math.floor(next() * names.length)]!;
    const domain = domains[Math.floor(next() * domains.length)]!;
    const style = next();
    const local =
      style < 0.5 ? `${name}.${i}` : style < 0.8 ? `${name}${i}+news` : `${name.toUpperCase()}.${i}`;
    const email = style > 0.95 ? ` ${local}@${domain} ` : `${local}@${domain}`;
    const area = areas[Math.floor(next() * areas.length)]!;
    const exchange = 201 + Math.floor(next() * 700);
    const line = String(Math.floor(next() * 10_000)).padStart(4, '0');
    const p = next();
    const phone =
      p < 0.4
        ? `+1 ${area}-${exchange === 555 ? 556 : exchange}-${line}`
        : p < 0.8
          ? `(${area}) ${exchange === 555 ? 556 : exchange}-${line}`
          : `${area}.${exchange === 555 ? 556 : exchange}.${line}`;
    const r = 1 + Math.floor(next() * 5);
    const f = 1 + Math.floor(next() * 5);
    const m = 1 + Math.floor(next() * 5);
    const id = `c${i}`;
    let person = '';
    if (options.names) {
      const first = given(Math.floor(next() ** 2 * 1000));
      const last = family(Math.floor(next() ** 2 * 10_000));
      const n = next();
      person =
        n < 0.6
          ? `,${first},${last}`
          : n < 0.9
            ? `,${first.toUpperCase()}, ${last} `
            : `, ${first},${last.toLowerCase()}`;
    }
    const rest = `,${f},${m},${email},"${phone}",US${person}\n`;
    let r2 = r;
    if (next() < changedShare) {
      r2 = r === 5 ? 1 : r + 1;
      changed++;
    }
    const arrives = options.arriving ? next() < options.arriving : false;
    const leaves = !arrives && options.leaving ? next() < options.leaving : false;
    if (!arrives) chunkA += `${id},${r}${rest}`;
    if (!leaves) chunkB += `${id},${r2}${rest}`;
    if (chunkA.length > 1 << 20) {
      if (!a.write(chunkA)) await once(a, 'drain');
      if (!b.write(chunkB)) await once(b, 'drain');
      chunkA = '';
      chunkB = '';
    }
  }
  a.end(chunkA);
  b.end(chunkB);
  await Promise.all([once(a, 'finish'), once(b, 'finish')]);
  return { changed };
}
