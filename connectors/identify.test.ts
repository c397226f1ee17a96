import { describe, expect, it } from 'vitest';
import { identifiers } from './identify.js';
import { connectors } from './index.js';

describe('the identify threads’ rules', () => {
  it('are the very functions the connectors use, for every connector that can run in threads', () => {
    for (const [type, identify] of Object.entries(identifiers))
      expect(identify, type).toBe(connectors[type]!.identify);
    // Every connector that does not need plaintext can be identified in threads.
    for (const [type, connector] of Object.entries(connectors))
      if (!connector.plaintext) expect(Object.keys(identifiers), type).toContain(type);
  });
});
