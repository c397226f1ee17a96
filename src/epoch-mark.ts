/**
 * The sync state's epoch in a platform audience's description (Meta, Google): `… (audience-sync epoch
 * 3f9a…)`. A run that finds an audience with another epoch, or none where its state has no record, knows
 * it holds what its state cannot account for (see `ConnectorClient.stamp`).
 */

const EPOCH_MARK = /\s*\(audience-sync epoch ([\w-]+)\)/;

/** The epoch a description carries, if any. */
export function epochOf(description: string | null | undefined): string | undefined {
  return EPOCH_MARK.exec(description ?? '')?.[1];
}

/** The description with this epoch as its mark, in place of any earlier one. */
export function withEpoch(description: string, epoch: string): string {
  return `${description.replace(EPOCH_MARK, '').trimEnd()} (audience-sync epoch ${epoch})`;
}
