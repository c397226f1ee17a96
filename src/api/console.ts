import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyHelmet from '@fastify/helmet';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../log.js';

/**
 * The web console: its pages' HTML shell and the bundle `npm run build` makes (console/ → dist/console),
 * served by the API's own server under a strict Content-Security-Policy that covers every response.
 */

/** dist/src/api → dist/console, where scripts/build-console.mjs writes the bundle and its manifest. */
const BUNDLE_DIR = fileURLToPath(new URL('../../console/', import.meta.url));
const ASSETS = '/console/';

/** The page routes and the page each shows (console/main.tsx knows them by these names). */
export const CONSOLE_PAGES = {
  '/': 'overview',
  '/login': 'login',
  '/destinations/:destination/audiences/:audience': 'audience',
  '/segments/:segment': 'segment',
  '/runs': 'runs',
} as const;
type PageName = (typeof CONSOLE_PAGES)[keyof typeof CONSOLE_PAGES] | 'not-found';

/** The console's Content-Security-Policy (helmet's directives). */
export const CSP = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:'],
  connectSrc: ["'self'"],
  fontSrc: ["'self'"],
  objectSrc: ["'none'"],
  baseUri: ["'none'"],
  formAction: ["'self'"],
  frameAncestors: ["'none'"],
};

interface Manifest {
  js: string;
  css: string;
}

/** The bundle's current names, read at each page (a rebuild while the server runs gives new ones). */
function readManifest(): Manifest | undefined {
  try {
    return JSON.parse(readFileSync(`${BUNDLE_DIR}manifest.json`, 'utf8')) as Manifest;
  } catch {
    return undefined;
  }
}

const shell = (manifest: Manifest, page: PageName) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>audience-sync</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${ASSETS}${manifest.css}">
<script type="module" src="${ASSETS}${manifest.js}"></script>
</head>
<body data-page="${page}">
<div id="app"><noscript>The audience-sync console needs JavaScript.</noscript></div>
</body>
</html>
`;

const notBuilt = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>audience-sync</title></head>
<body><h1>The console is not built</h1><p>Run <code>npm run build</code>, then reload this page. The API under /api/v1 works without it.</p></body>
</html>
`;

/** Sends a console page (the shell that loads the bundle), or says how to build the console. */
export type SendPage = (reply: FastifyReply, page: PageName) => FastifyReply;

/** A browser asking for a page (not the API, not a file of the bundle): it gets the console's 404 page. */
export function wantsPage(request: FastifyRequest): boolean {
  return (
    request.method === 'GET' &&
    !request.url.startsWith('/api/') &&
    !request.url.startsWith(ASSETS) &&
    (request.headers.accept ?? '').includes('text/html')
  );
}

/** Registers the security headers (on every response), the bundle's files and the page routes. */
export async function registerConsole(
  app: FastifyInstance,
  log: Logger,
  /** Whether the request comes from someone logged in (throws when that cannot be told: Redis down). */
  signedIn: (request: FastifyRequest) => Promise<boolean>,
  /** Whether what a page's URL names exists (a segment): the page then says it does not, with a 404. */
  exists: (page: string, params: Record<string, string>) => Promise<boolean> = async () => true,
): Promise<SendPage> {
  await app.register(fastifyHelmet, {
    contentSecurityPolicy: { useDefaults: false, directives: CSP },
    // Plain HTTP on 127.0.0.1 is the default; TLS is a proxy's business (HSTS belongs there).
    strictTransportSecurity: false,
    frameguard: { action: 'deny' },
  });
  if (!readManifest())
    log.warn(`the web console is not built (no ${BUNDLE_DIR}manifest.json): run \`npm run build\``);
  await app.register(fastifyStatic, {
    root: BUNDLE_DIR,
    prefix: ASSETS,
    // Hashed names: a new build has new names, so a browser may keep these for good.
    immutable: true,
    maxAge: '365d',
    index: false,
    preCompressed: true,
    // No reply.sendFile here: the queue board registers @fastify/static of its own, which decorates it.
    decorateReply: false,
    allowedPath: (pathName) => pathName !== '/manifest.json',
  });
  const send: SendPage = (reply, page) => {
    const manifest = readManifest();
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .code(manifest ? reply.statusCode : 503)
      .send(manifest ? shell(manifest, page) : notBuilt);
  };
  for (const [url, page] of Object.entries(CONSOLE_PAGES))
    app.get(url, { config: { access: 'public' }, schema: { hide: true } }, async (request, reply) => {
      // A visitor who is not logged in goes to the login page from here, before the page asks the API
      // anything (its 401 would be an error in the browser's console). When it cannot be told, the page
      // loads and says what is wrong.
      const visitor = page === 'login' ? true : await signedIn(request).catch(() => true);
      if (!visitor) {
        const here = request.url;
        return reply.redirect(`/login${here === '/' ? '' : `?next=${encodeURIComponent(here)}`}`);
      }
      const found = await exists(page, request.params as Record<string, string>).catch(() => true);
      return send(found ? reply : reply.code(404), page);
    });
  return send;
}
