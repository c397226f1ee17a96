import { granted } from '../../src/identity/consent.js';
import type { Identified, Person } from '../../src/identity/types.js';
import type { MetaConfig } from './config.js';
import { identifyMember } from './identifiers.js';

/** Meta's identifier rules for the configured schema, then the person's consent to ads. */
export function identify(
  person: Person,
  config: Pick<MetaConfig, 'schema' | 'default_country' | 'eea' | 'consent'>,
): Identified {
  const id = identifyMember(person, config);
  if ('skip' in id) return id;
  // Unset outside the EEA: everyone; on an EEA account nobody (its runs are refused before that).
  const ads = config.consent?.ads ?? (config.eea ? undefined : 'granted');
  if (!granted(ads, person)) return { skip: 'consent not granted (ads)' };
  return id;
}
