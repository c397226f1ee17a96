import { granted, signalOf } from '../../src/identify/consent.js';
import type { Identified, Person } from '../../src/identify/types.js';
import type { MetaConfig } from './config.js';
import { identifyMember } from './identifiers.js';

/** Meta's identifier rules for the configured schema, then the person's consent to ads. */
export function identify(
  person: Person,
  config: Pick<MetaConfig, 'schema' | 'default_country' | 'eea' | 'consent'>,
): Identified {
  const id = identifyMember(person, config);
  if ('skip' in id) return id;
  if (!granted(signalOf(config, 'ads'), person)) return { skip: 'consent not granted (ads)' };
  return id;
}
