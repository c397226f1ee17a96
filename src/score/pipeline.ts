import type { Config } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import { buildSegmentMap, type SegmentMap } from '../segment/maps.js';
import { readCustomers, type Customers, type ReadOptions, type ReadReport } from '../source/read.js';
import { dayNumber, todayUtc } from '../source/parse.js';
import { scoreCustomers, segmentSizes, type Scores, type SegmentSize } from './rfm.js';

/** source → score → segment: everything a `score`, `plan` or `sync` run needs about customers. */
export interface Segmented {
  analysisDay: number;
  customers: Customers;
  scores: Scores;
  map: SegmentMap;
  sizes: SegmentSize[];
  report: ReadReport;
}

export function analysisDayOf(setting: string, now = Date.now()): number {
  if (setting === 'today') return todayUtc(now);
  const [y, m, d] = setting.split('-').map(Number) as [number, number, number];
  const day = /^\d{4}-\d{2}-\d{2}$/.test(setting) ? dayNumber(y, m, d) : undefined;
  if (day === undefined)
    throw new ConfigError(`analysis date '${setting}' is not a date`, 'write it as YYYY-MM-DD, or today');
  return day;
}

export async function segmentCustomers(
  config: Pick<Config, 'source' | 'profiles' | 'scoring' | 'segments'>,
  options: {
    baseDir: string;
    onProgress?: ReadOptions['onProgress'];
    onCustomers?: ReadOptions['onCustomers'];
    now?: number;
  },
): Promise<Segmented> {
  const map = buildSegmentMap(config.segments);
  const analysisDay = analysisDayOf(config.scoring.analysis_date, options.now);
  const { customers, report } = await readCustomers(config.source, config.profiles, {
    analysisDay,
    scoring: config.scoring,
    baseDir: options.baseDir,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.onCustomers ? { onCustomers: options.onCustomers } : {}),
  });
  const scores = scoreCustomers(customers, config.scoring.method, map);
  return { analysisDay, customers, scores, map, sizes: segmentSizes(customers, scores, map), report };
}
