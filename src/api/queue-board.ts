import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { Queue } from 'bullmq';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RedisClient } from '../redis-client.js';
import { CSP } from './console.js';

/** Where the BullMQ queues' admin view (bull-board) is served, to operators only. */
export const QUEUE_BOARD = '/admin/queues';

/**
 * The console's policy with two exceptions for bull-board's page alone: its `<base href>` (its files are
 * named relative to it), and the inline styles of its loading placeholder, allowed by their hashes as the
 * installed version's page has them (no 'unsafe-inline'). Scripts stay 'self' only; its Google Fonts
 * stylesheet stays refused (nothing is loaded from elsewhere: the board falls back to the system font).
 */
function boardPolicy(): string {
  const ui = path.dirname(createRequire(import.meta.url).resolve('@bull-board/ui/package.json'));
  const page = readFileSync(path.join(ui, 'dist', 'index.ejs'), 'utf8');
  const inline = [
    ...[...page.matchAll(/ style="([^"]*)"/g)].map((m) => m[1]!),
    ...[...page.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!),
  ];
  const hashes = [...new Set(inline)].map(
    (text) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`,
  );
  // The <style> elements bull-board's scripts insert (react-toastify's and its own), as 8.1.2 has them:
  // a newer version that changes them shows those parts unstyled, nothing worse.
  hashes.push(
    "'sha256-r2N1TB/gHbBtBZFKg7ejmq1acVSREzucTAEw6ga4hoU='",
    "'sha256-AVTm08UMHPqpttgoudpSsvenKKfidtwuSnUVJLIuqcA='",
  );
  const directives: Record<string, string[]> = {
    ...CSP,
    baseUri: ["'self'"],
    styleSrc: ["'self'", ...(hashes.length ? ["'unsafe-hashes'", ...hashes] : [])],
  };
  return Object.entries(directives)
    .map(([name, values]) => `${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} ${values.join(' ')}`)
    .join('; ');
}

/**
 * Mounts bull-board at /admin/queues in a scope of its own, every request of which (page, files, its API)
 * passes `guard` first: the server refuses viewers and anonymous visitors, not just the links.
 */
export async function registerQueueBoard(
  app: FastifyInstance,
  options: {
    connection: RedisClient;
    prefix: string;
    names: readonly string[];
    /** Lets the request through, or answers it (the refusal) and returns the reply. */
    guard: (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>;
  },
): Promise<{ close(): Promise<void> }> {
  const queues = options.names.map((name) => {
    const q = new Queue(name, { connection: options.connection, prefix: options.prefix });
    q.on('error', () => undefined);
    return q;
  });
  const policy = boardPolicy();
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(QUEUE_BOARD);
  createBullBoard({
    // Read-only: jobs enter the queues through the API's actions, which check and log them, never by hand.
    queues: queues.map((q) => new BullMQAdapter(q, { readOnlyMode: true })),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'audience-sync queues' } },
  });
  await app.register(async (scope) => {
    scope.addHook('onRequest', async (request, reply) => {
      const refused = await options.guard(request, reply);
      if (refused) return refused;
    });
    scope.addHook('onSend', async (_request, reply) => void reply.header('content-security-policy', policy));
    await scope.register(serverAdapter.registerPlugin(), { prefix: QUEUE_BOARD });
  });
  return { close: async () => void (await Promise.all(queues.map((q) => q.close().catch(() => undefined)))) };
}
