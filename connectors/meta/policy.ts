/**
 * Words in an audience's name or description that suggest a health condition or a financial status.
 * Since 2025-09-02 Meta flags custom audiences like that (operation_status 471): no new campaigns, no new
 * people, less delivery. Segments of customer value rarely need such words, so a name that has them is
 * worth a warning before the audience is made.
 */
const RESTRICTED: readonly [RegExp, string][] = [
  [
    /\b(diabet\w*|cancer|hiv|aids|pregnan\w*|fertility|ivf|depress\w*|anxiety|adhd|autis\w*|alzheimer\w*|dementia|arthritis|asthma|obes\w*|weight[- ]loss|disabilit\w*|mental[- ]health|rehab\w*|addict\w*|alcoholi\w*|std|menopaus\w*|erectile|chronic\w*|illness\w*|diseases?|medications?|prescriptions?|patients?)\b/i,
    'a health condition',
  ],
  [
    /\b(credit[- ]scores?|bad[- ]credit|low[- ]income|high[- ]income|debts?|bankrupt\w*|loans?|mortgages?|net[- ]worth|salar(?:y|ies)|wealthy|affluent|poverty|welfare|unemploy\w*|insolven\w*|payday)\b/i,
    'a financial status',
  ],
];

/** Why Meta would flag an audience with this name or description, or undefined. */
export function restrictedReason(text: string): string | undefined {
  for (const [pattern, what] of RESTRICTED) {
    const match = pattern.exec(text);
    if (match) return `suggests ${what} ("${match[0]}")`;
  }
  return undefined;
}

/** The warning for an audience about to be made, or undefined. */
export function restrictedWarning(name: string, description: string): string | undefined {
  const inName = restrictedReason(name);
  const inDescription = restrictedReason(description);
  if (!inName && !inDescription) return undefined;
  const where = inName
    ? `its name ${inName}: rename it (audiences.list[].name)`
    : `its description ${inDescription}: change the destination's description setting`;
  return (
    `Meta audience '${name}': ${where}. Since 2025-09-02 Meta flags custom audiences that suggest health ` +
    'conditions or financial status: no new campaigns or people, and less delivery'
  );
}
