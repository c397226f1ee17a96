import { z } from 'zod';
import type { Check, ConsentSettingsCheck } from '../connector.js';
import type { Person } from './types.js';

/**
 * Consent per customer and per purpose, as destinations declare it (`destinations.<name>.consent`): the
 * same for everyone, or read per customer from a source attribute column. A customer without a purpose's
 * consent is kept out of the destination (and removed if uploaded) with the skip reason
 * `consent not granted (<purpose>)`.
 */

/** Every consent skip reason starts with this. */
export const CONSENT_NOT_GRANTED = 'consent not granted';

/** One consent setting read per customer: an attribute column (`source.attributes` or `profiles.attributes`). */
export const consentColumn = z.strictObject({
  /** Attribute column: granted, true, yes, y or 1 grant; anything else (empty included) does not. */
  column: z.string().min(1),
});

/** One purpose's consent: `granted` for everyone, or `{ column }` per customer. */
export const consentSignal = z.union([z.literal('granted'), consentColumn]);
/** A setting as configs hold it (`denied` for everyone: Google's, kept for its existing configs). */
export type ConsentSignal = 'granted' | 'denied' | z.infer<typeof consentColumn>;

const GRANTS = new Set(['granted', 'true', 'yes', '1', 'y']);

/** Whether the signal grants this person's consent (undefined: not set, on an EEA account: not granted). */
export function granted(signal: ConsentSignal | undefined, person: Person): boolean {
  if (signal === undefined) return false;
  if (typeof signal === 'string') return signal === 'granted';
  return GRANTS.has(person[signal.column]?.trim().toLowerCase() ?? '');
}

/** Whether a skip reason is a consent one (old records say `consent not granted` without a purpose). */
export function isConsentReason(reason: string): boolean {
  return reason.startsWith(CONSENT_NOT_GRANTED);
}

/**
 * Why an EEA account (`eea: true`) may not upload: its consent settings, which have no default there,
 * are not written. Undefined when they are, or outside the EEA.
 */
export function eeaConsentProblem(
  destination: string,
  config: { eea?: boolean | undefined; consent?: object | undefined },
  settings: readonly string[],
): string | undefined {
  if (!config.eea || config.consent !== undefined) return undefined;
  const names = settings.map((s) => `destinations.${destination}.consent.${s}`).join(' and ');
  return (
    `${names} must be set for an EEA account (eea: true): 'granted' if every customer consented, ` +
    `or { column: <attribute> } to read each customer's consent from the source`
  );
}

/** A destination's consent settings (`eea`, and `consent` by purpose) as its config holds them. */
export interface ConsentSettings<P extends string> {
  eea?: boolean | undefined;
  consent?: { readonly [K in P]: ConsentSignal } | undefined;
}

/** A purpose's setting in force: as written, else granted for everyone; none on an EEA account left unset. */
export function signalOf<P extends string>(
  config: ConsentSettings<P>,
  purpose: P,
): ConsentSignal | undefined {
  if (config.consent) return config.consent[purpose];
  return config.eea ? undefined : 'granted';
}

/** The consent settings as a row of `check`: failed on an EEA account that left them unset. */
export function consentRow<P extends string>(
  destination: string,
  config: ConsentSettings<P>,
  purposes: readonly P[],
): Check {
  const problem = eeaConsentProblem(destination, config, purposes);
  if (problem) return { name: 'consent', ok: false, detail: problem };
  const each = purposes.map((p) => {
    const signal = signalOf(config, p)!;
    return `${p} ${typeof signal === 'string' ? signal : `from column '${signal.column}'`}`;
  });
  return { name: 'consent', ok: true, detail: `${each.join(', ')}${config.eea ? ' (EEA account)' : ''}` };
}

/** The settings as a connector declares them (`ConnectorDefinition.consent`): `row`, and the columns they read. */
export function consentSettings<P extends string>(
  destination: string,
  config: ConsentSettings<P>,
  row: Check,
): ConsentSettingsCheck {
  const signals = Object.entries<ConsentSignal>(config.consent ?? {});
  const columns = signals.flatMap(([purpose, signal]) =>
    typeof signal === 'object'
      ? [{ setting: `destinations.${destination}.consent.${purpose}`, column: signal.column }]
      : [],
  );
  return { check: row, columns };
}
