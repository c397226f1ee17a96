import { useMemo, useState } from 'preact/hooks';
import {
  allSnapshots,
  ApiFailure,
  call,
  type Action,
  type AudienceHealth,
  type Audiences,
  type Destinations,
  type Movement,
  type Segments,
  type Session,
  type Snapshot,
} from '../api.js';
import { Chart, dark, escapeHtml, segmentColours, Swatch, type ChartOption } from '../chart.js';
import { namesInOrder } from '../colours.js';
import { change, count, dateTime, share } from '../format.js';
import { audiencePath, segmentPath, STATUSES, statusOf, type Status as HealthStatus } from '../health.js';
import { SignedInPage } from '../layout.js';
import { PeriodForm, periodOf, type Period } from '../period.js';
import { useLoad } from '../load.js';
import { Section, Status } from '../section.js';
import { DataTable, type Column } from '../table.js';

export function OverviewPage() {
  document.title = 'Overview · audience-sync';
  const period = useMemo(() => periodOf(location.search), []);
  return (
    <SignedInPage heading="Overview">
      {(session) => (
        <>
          <PeriodForm action="/" period={period} />
          <Overview period={period} session={session} />
        </>
      )}
    </SignedInPage>
  );
}

function Overview(props: { period: Period; session: Session }) {
  const { period } = props;
  // The cards show the period's last snapshot, so a bookmarked address shows what it showed.
  const segments = useLoad('segments', () => {
    const query = new URLSearchParams();
    if (period.from) query.set('trend_from', period.from);
    if (period.to) query.set('to', period.to);
    return call<Segments>('GET', `/api/v1/segments${query.size ? `?${query}` : ''}`);
  });
  const snapshots = useLoad('snapshots', () => allSnapshots(period));
  const lastSnapshot = snapshots.state === 'ready' ? snapshots.data.at(-1) : undefined;
  const last = lastSnapshot?.date;
  // The first snapshot of all has nothing before it to count movement from (the API would answer 404).
  const first =
    lastSnapshot !== undefined && lastSnapshot.movement.from === null && !lastSnapshot.movement.reason;
  const movement = useLoad(`movement ${snapshots.state} ${last}`, async () =>
    snapshots.state !== 'ready'
      ? undefined
      : last && !first
        ? call<Movement>('GET', `/api/v1/movement?${new URLSearchParams({ to: last })}`)
        : null,
  );
  const health = useLoad('health', audienceHealth);
  const names = segments.state === 'ready' ? segments.data.segments.map((s) => s.name) : [];
  return (
    <>
      <Section title="Segments" id="segments">
        {segments.state === 'ready' ? <SegmentList segments={segments.data} /> : <Status loaded={segments} />}
      </Section>
      <Section title="Segment sizes over time" id="trend">
        {snapshots.state === 'ready' && segments.state !== 'loading' ? (
          <Trend snapshots={snapshots.data} order={names} />
        ) : (
          <Status loaded={snapshots} />
        )}
      </Section>
      <Section title="Movement between segments" id="movement">
        {snapshots.state === 'failed' ? (
          <Status loaded={snapshots} />
        ) : movement.state === 'ready' && movement.data ? (
          <MovementMatrix movement={movement.data} order={names} />
        ) : movement.state === 'ready' && first ? (
          <p>The first snapshot ({last}) has no earlier one to count movement from.</p>
        ) : movement.state === 'ready' ? (
          <p>No snapshot in this period yet.</p>
        ) : (
          <Status loaded={movement} />
        )}
      </Section>
      <Section title="Destination health" id="health">
        {health.state === 'ready' ? (
          <Health health={health.data} session={props.session} />
        ) : (
          <Status loaded={health} />
        )}
      </Section>
    </>
  );
}

type SegmentRow = Segments['segments'][number] & { change: number | null };

function SegmentList(props: { segments: Segments }) {
  const { segments } = props;
  if (segments.date === null)
    return (
      <p>Nothing has been scored yet: run a sync, a worker or a backfill, and the segments appear here.</p>
    );
  const rows: SegmentRow[] = segments.segments.map((s) => ({
    ...s,
    change: s.trend.length >= 2 ? s.trend.at(-1)! - s.trend.at(-2)! : null,
  }));
  const before = segments.trend_dates.at(-2);
  const colours = segmentColours(segments.segments.map((s) => s.name));
  const columns: Column<SegmentRow>[] = [
    { title: 'Segment', value: (r) => r.name },
    { title: 'Customers', value: (r) => r.customers, show: (r) => count(r.customers), numeric: true },
    { title: 'Share', value: (r) => r.share, show: (r) => share(r.share), numeric: true },
    { title: 'Change', value: (r) => r.change, show: (r) => change(r.change), numeric: true },
    { title: 'Opted out', value: (r) => r.opted_out, show: (r) => count(r.opted_out), numeric: true },
    { title: 'Suggested action', value: (r) => r.action },
  ];
  return (
    <>
      <p>
        {count(segments.customers)} customers scored as of {segments.date}
        {before ? `; changes are since ${before}` : ''}.
      </p>
      <ul class="cards">
        {rows.map((s) => (
          <li class="card">
            <h3>
              <Swatch colour={colours.get(s.name)} />
              <a href={segmentPath(s.name)}>{s.name}</a>
            </h3>
            <p class="size">
              {count(s.customers)} <span class="muted">customers</span>
            </p>
            <p>
              {share(s.share)} of all
              {s.change !== null && (
                <>
                  {' · '}
                  <span class={s.change > 0 ? 'up' : s.change < 0 ? 'down' : undefined}>
                    {change(s.change)}
                  </span>{' '}
                  since {before}
                </>
              )}
            </p>
            {s.trend.length > 1 && (
              <Chart
                class="spark"
                label={`${s.name}: size at each snapshot`}
                option={spark(s.trend, colours.get(s.name))}
              />
            )}
            {s.action && <p class="action">{s.action}</p>}
          </li>
        ))}
      </ul>
      <DataTable
        caption={`Segments on ${segments.date}`}
        filename={`segments-${segments.date}.csv`}
        columns={columns}
        rows={rows}
        folded
      />
    </>
  );
}

function spark(trend: number[], colour: string | undefined): ChartOption {
  return {
    ...(colour ? { color: [colour] } : {}),
    grid: { left: 2, right: 2, top: 4, bottom: 4 },
    xAxis: { type: 'category', show: false, boundaryGap: false, data: trend.map((_, k) => k) },
    yAxis: { type: 'value', show: false, scale: true },
    series: [
      {
        type: 'line',
        data: trend,
        symbol: 'none',
        silent: true,
        lineStyle: { width: 2 },
        areaStyle: { opacity: 0.15 },
      },
    ],
  };
}

function Trend(props: { snapshots: Snapshot[]; order: string[] }) {
  const { snapshots } = props;
  const { names, colours } = useMemo(() => {
    const seen = new Set(snapshots.flatMap((s) => s.segments.map((x) => x.segment)));
    const all = namesInOrder(props.order, seen);
    return { names: all.filter((n) => seen.has(n)), colours: segmentColours(all) };
  }, [snapshots, props.order]);
  const rows = useMemo(
    () =>
      snapshots.map((s) => ({
        date: s.date,
        sizes: new Map(s.segments.map((x) => [x.segment, x.customers])),
      })),
    [snapshots],
  );
  const option = useMemo<ChartOption>(
    () => ({
      color: names.map((name) => colours.get(name)!),
      legend: { type: 'scroll', top: 0 },
      grid: { left: 56, right: 16, top: 40, bottom: 32 },
      tooltip: {
        trigger: 'axis',
        confine: true,
        formatter: (params: unknown) => {
          const items = params as { seriesName: string; value: number; axisValueLabel: string }[];
          return [
            escapeHtml(items[0]?.axisValueLabel ?? ''),
            ...items.filter((i) => i.value > 0).map((i) => `${escapeHtml(i.seriesName)}: ${count(i.value)}`),
          ].join('<br>');
        },
      },
      xAxis: { type: 'category', boundaryGap: false, data: rows.map((r) => r.date) },
      yAxis: { type: 'value' },
      series: names.map((name) => ({
        name,
        type: 'line',
        stack: 'customers',
        areaStyle: {},
        symbol: rows.length > 40 ? 'none' : 'circle',
        data: rows.map((r) => r.sizes.get(name) ?? 0),
      })),
    }),
    [names, rows, colours],
  );
  if (snapshots.length === 0) return <p>No snapshot in this period.</p>;
  const columns: Column<(typeof rows)[number]>[] = [
    { title: 'Date', value: (r) => r.date },
    ...names.map((name) => ({
      title: name,
      value: (r: (typeof rows)[number]) => r.sizes.get(name) ?? 0,
      show: (r: (typeof rows)[number]) => count(r.sizes.get(name) ?? 0),
      numeric: true,
    })),
  ];
  const first = rows[0]!.date;
  const lastDate = rows.at(-1)!.date;
  return (
    <>
      <p>
        {snapshots.length} snapshots from {first} to {lastDate}.
      </p>
      <Chart
        class="trend"
        label={`Segment sizes at each snapshot from ${first} to ${lastDate}, stacked`}
        option={option}
      />
      <DataTable
        caption={`Segment sizes from ${first} to ${lastDate}`}
        filename={`segment-sizes-${first}-${lastDate}.csv`}
        columns={columns}
        rows={rows}
        folded
      />
    </>
  );
}

const NEW = 'new';
const GONE = 'gone';

function MovementMatrix(props: { movement: Movement; order: string[] }) {
  const { movement } = props;
  const step = movement.exact && movement.steps?.length === 1 ? movement.steps[0]! : undefined;
  const matrix = useMemo(() => {
    if (!step) return undefined;
    const seen = new Set(step.cells.flatMap((c) => [c.from, c.to]));
    const segments = [
      ...props.order,
      ...[...seen].filter((s) => s !== NEW && s !== GONE && !props.order.includes(s)),
    ];
    const from = [NEW, ...segments];
    const to = [...segments, GONE];
    const cells = new Map(step.cells.map((c) => [`${c.from}\u0000${c.to}`, c.customers]));
    const at = (f: string, t: string) => cells.get(`${f}\u0000${t}`) ?? 0;
    return { from, to, at };
  }, [step, props.order]);
  const option = useMemo<ChartOption | undefined>(() => {
    if (!matrix) return undefined;
    const data = matrix.from.flatMap((f, y) => matrix.to.map((t, x) => [x, y, matrix.at(f, t)]));
    const max = Math.max(1, ...data.map((d) => d[2]!));
    return {
      grid: { left: 8, right: 8, top: 8, bottom: 8, containLabel: true },
      tooltip: {
        trigger: 'item',
        confine: true,
        formatter: (p: unknown) => {
          const [x, y, n] = (p as { value: [number, number, number] }).value;
          return `${escapeHtml(matrix.from[y]!)} → ${escapeHtml(matrix.to[x]!)}: ${count(n)} customers`;
        },
      },
      // Upright column names where the screen is narrow (a phone), slanted where there is room.
      xAxis: {
        type: 'category',
        data: matrix.to,
        axisLabel: { interval: 0, rotate: window.matchMedia('(max-width: 40rem)').matches ? 90 : 40 },
      },
      yAxis: { type: 'category', data: matrix.from, inverse: true, axisLabel: { interval: 0 } },
      // From the page's background to its accent, so that empty cells do not glare in the dark theme.
      visualMap: {
        min: 0,
        max,
        show: false,
        inRange: { color: dark() ? ['#18202a', '#7fb0ff'] : ['#eef3fb', '#1f5fbf'] },
      },
      series: [{ type: 'heatmap', data, emphasis: { itemStyle: { borderColor: '#000', borderWidth: 1 } } }],
    };
  }, [matrix]);
  if (!step || !matrix || !option)
    return (
      <p>
        Movement from {movement.from} to {movement.to} cannot be told exactly
        {movement.reason ? `: ${movement.reason}` : ''}.
      </p>
    );
  type Row = (typeof matrix.from)[number];
  /** A cell opens the segment customers went to over this period (the one they left, for "gone"). */
  const cellPage = (f: string, t: string) =>
    f === NEW && t === GONE ? undefined : segmentPath(t === GONE ? f : t, { from: step.from, to: step.to });
  const columns: Column<Row>[] = [
    { title: 'From \\ to', value: (f) => f },
    ...matrix.to.map((t) => ({
      title: t,
      value: (f: Row) => matrix.at(f, t),
      show: (f: Row) => count(matrix.at(f, t)),
      numeric: true,
      link: (f: Row) => cellPage(f, t),
    })),
  ];
  return (
    <>
      <p>
        Customers who moved from one segment (rows) to another (columns) between {step.from} and {step.to};
        “new” were not customers on {step.from}, “gone” are no longer scored on {step.to}. Hover over a cell
        for its count, click it (or its number in the table) to open the segment.
      </p>
      <Chart
        class="heatmap"
        label={`Movement between segments from ${step.from} to ${step.to}`}
        option={option}
        onClick={(value) => {
          const [x, y] = value as [number, number];
          const page = cellPage(matrix.from[y]!, matrix.to[x]!);
          if (page) location.assign(page);
        }}
      />
      <DataTable
        caption={`Movement from ${step.from} to ${step.to}`}
        filename={`movement-${step.from}-${step.to}.csv`}
        columns={columns}
        rows={matrix.from}
        folded
      />
    </>
  );
}

interface HealthData {
  destinations: Destinations['destinations'];
  audiences: AudienceHealth[];
}

async function audienceHealth(): Promise<HealthData> {
  const [{ destinations }, { audiences }] = await Promise.all([
    call<Destinations>('GET', '/api/v1/destinations'),
    call<Audiences>('GET', '/api/v1/audiences'),
  ]);
  return { destinations, audiences };
}

function Health(props: { health: HealthData; session: Session }) {
  const { destinations, audiences } = props.health;
  if (audiences.length === 0) return <p>No destination audiences in the config.</p>;
  const tally = new Map<HealthStatus, number>();
  for (const a of audiences) tally.set(statusOf(a), (tally.get(statusOf(a)) ?? 0) + 1);
  const shown = (Object.keys(STATUSES) as HealthStatus[]).filter((s) => s !== 'not_run' || tally.has(s));
  const columns: Column<AudienceHealth>[] = [
    { title: 'Audience', value: (a) => a.audience },
    { title: 'Destination', value: (a) => a.destination },
    { title: 'Status', value: (a) => STATUSES[statusOf(a)] + (a.paused ? ' (paused)' : '') },
    { title: 'Expected', value: (a) => a.expected, show: (a) => count(a.expected), numeric: true },
    { title: 'Confirmed', value: (a) => a.confirmed, show: (a) => count(a.confirmed), numeric: true },
    {
      title: 'Platform size',
      value: (a) => a.platform?.size ?? null,
      show: (a) => count(a.platform?.size),
      numeric: true,
    },
    {
      title: 'Last run',
      value: (a) => a.lastRun?.at ?? null,
      show: (a) => dateTime(a.lastRun?.at),
    },
  ];
  return (
    <>
      <ul class="strip" aria-label="Audiences by status">
        {shown.map((s) => (
          <li class={`tile ${s}`}>
            <span class="n">{count(tally.get(s) ?? 0)}</span> {STATUSES[s]}
          </li>
        ))}
      </ul>
      <ul class="audience-links" aria-label="Audiences">
        {audiences.map((a) => (
          <li>
            <a href={audiencePath(a.destination, a.audience)}>
              {a.audience} on {a.destination}
            </a>{' '}
            <span class={`badge ${statusOf(a)}`}>
              {STATUSES[statusOf(a)]}
              {a.paused ? ' (paused)' : ''}
            </span>
          </li>
        ))}
      </ul>
      {props.session.role === 'operator' && <StatsButtons destinations={destinations} />}
      <DataTable
        caption="Audiences on each destination"
        filename="audience-health.csv"
        columns={columns}
        rows={audiences}
        folded
      />
    </>
  );
}

/** Operators only: ask the workers to read every audience's size from the platform now. */
function StatsButtons(props: { destinations: Destinations['destinations'] }) {
  const [said, setSaid] = useState<string>();
  const ask = async (destination: string) => {
    try {
      const a = await call<Action>('POST', `/api/v1/destinations/${encodeURIComponent(destination)}/stats`);
      setSaid(`Asked the workers to read ${destination}'s audience sizes (job ${a.job.id}).`);
    } catch (e) {
      setSaid(`${destination}: ${e instanceof ApiFailure ? e.message : (e as Error).message}`);
    }
  };
  return (
    <div class="actions">
      {props.destinations.map((d) => (
        <button type="button" class="operator" onClick={() => void ask(d.name)}>
          Read {d.name}’s sizes now
        </button>
      ))}
      <p role="status">{said}</p>
    </div>
  );
}
