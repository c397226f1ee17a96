import { SourceError } from '../errors.js';
import { closest } from '../config/load.js';
import type { Shape } from '../config/schema.js';

/** Every column a source can map, in our words. */
export const PROFILE_FIELDS = [
  'email',
  'phone',
  'first_name',
  'last_name',
  'country',
  'postal_code',
  'external_id',
] as const;
export type ProfileField = (typeof PROFILE_FIELDS)[number];

export type Field =
  | 'customer_id'
  | 'order_date'
  | 'amount'
  | 'last_order_date'
  | 'recency_days'
  | 'order_count'
  | 'total_revenue'
  | 'r'
  | 'f'
  | 'm'
  | 'rfm_code'
  | 'segment'
  | 'opted_out'
  | 'consent'
  | ProfileField;

/** Column names recognised without configuration (compared lowercased, spaces and dashes as `_`). */
const DEFAULT_NAMES: Record<Field, readonly string[]> = {
  customer_id: ['customer_id', 'customerid', 'customer', 'client_id', 'user_id'],
  order_date: ['order_date', 'date', 'orderdate', 'purchase_date', 'order_time', 'created_at'],
  amount: ['amount', 'revenue', 'order_total', 'total', 'value', 'sales'],
  last_order_date: [
    'last_order_date',
    'date_most_recent',
    'most_recent_order',
    'last_order',
    'last_purchase_date',
  ],
  recency_days: ['recency_days', 'recency'],
  order_count: ['order_count', 'number_of_orders', 'n_orders', 'orders', 'transaction_count', 'frequency'],
  total_revenue: ['total_revenue', 'revenue', 'amount', 'monetary', 'total_spent', 'lifetime_value'],
  r: ['r', 'r_score', 'recency_score'],
  f: ['f', 'f_score', 'frequency_score'],
  m: ['m', 'm_score', 'monetary_score'],
  rfm_code: ['rfm_code', 'rfm_score', 'rfm'],
  segment: ['segment', 'rfm_segment'],
  opted_out: ['opted_out', 'opt_out', 'optout', 'unsubscribed'],
  consent: ['consent', 'marketing_consent', 'ads_consent'],
  email: ['email', 'email_address', 'e_mail'],
  phone: ['phone', 'phone_number', 'mobile', 'telephone'],
  first_name: ['first_name', 'firstname', 'given_name'],
  last_name: ['last_name', 'lastname', 'family_name', 'surname'],
  country: ['country', 'country_code'],
  postal_code: ['postal_code', 'zip', 'zip_code', 'postcode'],
  external_id: ['external_id', 'extern_id'],
};

const normalise = (name: string): string =>
  name
    .trim()
    .toLowerCase()
    .replace(/[\s-]+/g, '_');

/** Finds columns in a header: configured names must exist; default names are tried otherwise. */
export class ColumnResolver {
  private readonly byName = new Map<string, number>();

  constructor(
    readonly header: readonly string[],
    private readonly configured: Partial<Record<string, string>>,
    private readonly label: string,
    private readonly configPath: string,
    /** How the header was split into columns (`delimiterNote`), '' when it was not read from a CSV file. */
    private readonly split = '',
  ) {
    header.forEach((h, i) => {
      if (!this.byName.has(h)) this.byName.set(h, i);
      const n = normalise(h);
      if (!this.byName.has(n)) this.byName.set(n, i);
    });
  }

  /** The column index of a field, or undefined when it is neither configured nor found by default name. */
  find(field: Field): number | undefined {
    const name = this.configured[field];
    if (name !== undefined) return this.column(name, `${this.configPath}.columns.${field}`);
    for (const candidate of DEFAULT_NAMES[field]) {
      const i = this.byName.get(candidate);
      if (i !== undefined) return i;
    }
    return undefined;
  }

  require(field: Field, shape: Shape): number {
    const i = this.find(field);
    if (i !== undefined) return i;
    throw new SourceError(
      `${this.label}: no ${field} column for the ${shape} shape (looked for ${DEFAULT_NAMES[field].join(', ')}; ${this.columns()})`,
      `name it in ${this.configPath}.columns.${field}${this.splitFix()}`,
    );
  }

  /** A column named in the config (an attribute, an engagement column): it must exist. */
  column(name: string, configPath: string): number {
    const i = this.byName.get(name) ?? this.byName.get(normalise(name));
    if (i !== undefined) return i;
    const near = closest(name, this.header);
    throw new SourceError(
      `${this.label}: column '${name}' (from ${configPath}) is not in the header${near ? `; did you mean '${near}'?` : ''} (${this.columns()})`,
      `fix ${configPath} or the export${this.splitFix()}`,
    );
  }

  /** The header's columns, and how they were split, for a message. */
  columns(): string {
    return `columns are: ${this.header.join(', ')}${this.split ? `; split on ${this.split}` : ''}`;
  }

  /** The other fix of a missing column when the header was split on a delimiter. */
  splitFix(): string {
    return this.split
      ? `, or set ${this.configPath}.delimiter if the file's fields are split by another character (',', ';', tab or '|')`
      : '';
  }

  /** The input shape a header looks like, or undefined when it matches none. */
  detectShape(): Shape | undefined {
    const has = (f: Field) => this.find(f) !== undefined;
    if (has('order_date')) return 'orders';
    if ((has('last_order_date') || has('recency_days')) && has('order_count')) return 'customers';
    if ((has('r') && has('f') && has('m')) || has('rfm_code') || has('segment')) return 'scores';
    return undefined;
  }
}

export function expectedColumns(): string {
  return [
    'orders: customer_id, order_date (or date), amount (or revenue)',
    'customers: customer_id, last_order_date (or recency_days), order_count, total_revenue',
    'scores: customer_id and r, f, m (or rfm_code, or segment)',
  ].join('; ');
}
