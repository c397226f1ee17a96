import type { AudienceChecks } from '../audience/audiences.js';
import type { PolicyFinding, SizeRules } from '../connector.js';
import type { AudiencePlan } from './plan.js';

/**
 * Checks before every upload: the platform's size rules (`min_size`, `removal_floor`) and an additive-only
 * audience (`additive_only`), applied to a plan before anything is sent. A check never holds back a
 * removal privacy requires (`AudiencePlan.required`).
 */

/** The checks of an audience made outside a config (tests, tools): warn, and removals go. */
export const DEFAULT_CHECKS: AudienceChecks = { removals: true, minSize: 'warn' };

/** What the checks found, and what they hold back of the plan. */
export interface PolicyOutcome {
  findings: PolicyFinding[];
  /**
   * `sendable`: only the removals privacy requires go (an audience below its minimum, `sync.min_size:
   * block`). `left`: the removals of members who left are held; additions and other removals go.
   */
  hold?: 'sendable' | 'left';
  /** Why the audience was held whole (`hold: sendable`): the run's error, as a brake's. */
  held?: string;
}

/** Members the audience holds on the platform after this run, when everything planned goes. */
export function sizeAfter(plan: AudiencePlan): number {
  return plan.members - plan.rejectedEarlier + plan.kept;
}

export function checkPolicy(
  plan: AudiencePlan,
  rules: SizeRules | undefined,
  checks: AudienceChecks,
): PolicyOutcome {
  const out: PolicyOutcome = { findings: [] };
  const after = sizeAfter(plan);
  const block = checks.minSize === 'block';
  const sendable = plan.add.length + plan.remove.length - plan.required;

  if (rules?.minMembers !== undefined && after < rules.minMembers) {
    const base =
      `${rules.why}; this audience would hold ${count(after)} after this run, ` +
      `${count(rules.minMembers - after)} short. Widen its segments or merge it with another audience`;
    if (!block)
      out.findings.push({
        check: 'min_size',
        message: `${base}. Sent anyway (sync.min_size: warn; block holds it until it is large enough)`,
        blocked: false,
      });
    else if (sendable === 0)
      out.findings.push({ check: 'min_size', message: `${base}. Nothing to send this run`, blocked: false });
    else {
      out.held =
        `held below the platform's minimum: ${base}. Nothing was sent to it but removals privacy requires ` +
        `(sync.min_size: block); it goes once it would hold ${count(rules.minMembers)}, or with sync.min_size: warn`;
      out.hold = 'sendable';
      out.findings.push({ check: 'min_size', message: out.held, blocked: true });
    }
  }

  const before = plan.current;
  const floor = rules?.removalFloor;
  if (rules && floor !== undefined && out.hold === undefined && before >= floor && after < floor) {
    const removing = plan.remove.length;
    const base =
      `${rules.why}; removing ${count(removing)} members would take this audience from ${count(before)} ` +
      `to ${count(after)}, below ${count(floor)}`;
    if (!block)
      out.findings.push({
        check: 'removal_floor',
        message:
          `${base}. Sent anyway (sync.min_size: warn; block holds such removals, ` +
          `sync.removals: false keeps every member who leaves)`,
        blocked: false,
      });
    else if (plan.left === 0)
      out.findings.push({
        check: 'removal_floor',
        message: `${base}. Not held: privacy requires these removals, or they replace changed identifiers`,
        blocked: false,
      });
    else {
      out.hold = 'left';
      out.findings.push({
        check: 'removal_floor',
        message:
          `${base}. The ${count(plan.left)} removals of members who left were held (sync.min_size: block); ` +
          `additions and removals privacy requires went. To let them go, set sync.min_size: warn`,
        blocked: true,
      });
    }
  }

  if (plan.kept > 0)
    out.findings.push({
      check: 'additive_only',
      message:
        `${count(plan.kept)} members who left this audience stay on the platform (sync.removals: false); ` +
        `removals privacy requires still go`,
      blocked: true,
    });
  return out;
}

const count = (n: number) => n.toLocaleString('en-US');
