/**
 * Graph API versions and the day Meta stops serving each (developers.facebook.com/docs/graph-api/changelog).
 * Add a line when Meta releases a version: the newest is the default.
 */
export const GRAPH_VERSIONS: readonly { version: string; expires: string }[] = [
  { version: 'v22.0', expires: '2026-02-19' },
  { version: 'v23.0', expires: '2026-06-09' },
  { version: 'v24.0', expires: '2026-11-10' },
  { version: 'v25.0', expires: '2027-02-23' },
];

export const DEFAULT_API_VERSION = GRAPH_VERSIONS[GRAPH_VERSIONS.length - 1]!.version;

/** Days before a version expires from which every run and `check` warn. */
export const WARN_DAYS = 60;

const DAY_MS = 86_400_000;
const major = (version: string) => Number(/^v(\d+)/.exec(version)?.[1] ?? NaN);

/**
 * What to tell about a configured version on `today`: expired (calls may fail, or reach a newer version
 * where Meta upgrades them), expiring within WARN_DAYS, or nothing (in the table and served, or newer
 * than the table knows).
 */
export function versionNotice(version: string, today: Date): { expired: boolean; text: string } | undefined {
  const known = GRAPH_VERSIONS.find((v) => v.version === version);
  const fix = `set api_version: ${DEFAULT_API_VERSION} (or leave it out for the newest version this release knows)`;
  if (!known) {
    if (major(version) >= major(GRAPH_VERSIONS[0]!.version)) return undefined;
    return {
      expired: true,
      text: `Graph API ${version} is older than any version Meta still serves: ${fix}`,
    };
  }
  const days = Math.ceil((Date.parse(`${known.expires}T00:00:00Z`) - today.getTime()) / DAY_MS);
  if (days <= 0) return { expired: true, text: `Graph API ${version} expired on ${known.expires}: ${fix}` };
  if (days <= WARN_DAYS)
    return {
      expired: false,
      text: `Graph API ${version} expires on ${known.expires} (in ${days} day${days === 1 ? '' : 's'}): ${fix}`,
    };
  return undefined;
}
