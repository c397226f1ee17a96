#!/usr/bin/env node
import { main } from './main.js';

const code = await main(process.argv.slice(2));
// Exit once the output is written: an open connection (a Redis client reconnecting, a queue) must never
// keep a command alive after its work ended.
await Promise.all(
  [process.stdout, process.stderr].map((stream) => new Promise((resolve) => stream.write('', resolve))),
);
process.exit(code);
