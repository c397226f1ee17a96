import { gunzipSync } from 'node:zlib';

/**
 * The regular files of a tar.gz (Mailchimp's `/batches` results): 512-byte headers, each followed by
 * its data padded to 512 bytes. GNU long names (`L`) and pax headers (`x`) are honoured for names.
 */
export function readTarGz(archive: Buffer): { name: string; data: Buffer }[] {
  const tar = gunzipSync(archive);
  const files: { name: string; data: Buffer }[] = [];
  let longName: string | undefined;
  for (let at = 0; at + 512 <= tar.length;) {
    const header = tar.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break;
    const field = (from: number, length: number) =>
      header
        .subarray(from, from + length)
        .toString('utf8')
        .replace(/\0.*$/s, '');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    if (!Number.isFinite(size) || size < 0) throw new Error(`corrupt tar header at byte ${at}`);
    const type = field(156, 1) || '0';
    const data = tar.subarray(at + 512, at + 512 + size);
    if (data.length < size) throw new Error(`truncated tar entry at byte ${at}`);
    at += 512 + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = data.toString('utf8').replace(/\0.*$/s, '');
      continue;
    }
    if (type === 'x') {
      longName = /\d+ path=([^\n]*)\n/.exec(data.toString('utf8'))?.[1] ?? longName;
      continue;
    }
    const prefix = field(345, 155);
    const name = longName ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    longName = undefined;
    if (type === '0' || type === '7') files.push({ name, data: Buffer.from(data) });
  }
  return files;
}
