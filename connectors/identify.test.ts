import { describe, expect, it } from 'vitest';
import { connectors } from './index.js';

describe('the identify threads’ rules', () => {
  it('are the very functions the connectors use, for every connector that can run in threads', async () => {
    for (const [type, connector] of Object.entries(connectors)) {
      // Every connector that does not need plaintext can be identified in threads.
      if (connector.plaintext) continue;
      expect(connector.identifiers, type).toBeDefined();
      const module = (await import(`./${connector.identifiers!.replace(/\.js$/, '.ts')}`)) as {
        identify: unknown;
      };
      expect(module.identify, type).toBe(connector.identify);
    }
  });
});
