import { useMemo, useState } from 'preact/hooks';
import {
  allSnapshots,
  call,
  type AudienceHealth,
  type Audiences,
  type Movement,
  type Segments,
  type Session,
  type Snapshot,
} from '../api.js';
import { Chart, escapeHtml, segmentColours, type ChartOption } from '../chart.js';
import { count, share } from '../format.js';
import { audiencePath, segmentPath, STATUSES, statusOf } from '../health.js';
import { SignedInPage } from '../layout.js';
import { PeriodForm, periodOf, type Period } from '../period.js';
import { useLoad } from '../load.js';
import { Section, Status } from '../section.js';
import { DataTable, type Column } from '../table.js';

/** The segment named by the address (/segments/:segment) and the period in its query (`?from=&to=`). */
function addressOf(): { segment: string; period: Period } {
  const segment = decodeURIComponent(location.pathname.split('/')[2] ?? '');
  return { segment, period: periodOf(location.search) };
}

export function SegmentPage() {
  const { segment, period } = useMemo(addressOf, []);
  const segments = useLoad('segments', () => call<Segments>('GET', '/api/v1/segments'));
  const unknown = segments.state === 'ready' && !segments.data.segments.some((s) => s.name === segment);
  document.title = `${unknown ? 'No such segment' : segment} · audience-sync`;
  return (
    <SignedInPage heading={unknown ? 'No such segment' : segment}>
      {(session) =>
        segments.state !== 'ready' ? (
          <Status loaded={segments} />
        ) : unknown ? (
          <NoSuchSegment segment={segment} segments={segments.data} />
        ) : (
          <>
            <PeriodForm action={segmentPath(segment)} period={period} />
            <SegmentView segment={segment} period={period} session={session} segments={segments.data} />
          </>
        )
      }
    </SignedInPage>
  );
}

function NoSuchSegment(props: { segment: string; segments: Segments }) {
  return (
    <>
      <p role="alert" class="error">
        There is no segment named “{props.segment}”. Check the address, or pick one of the segments below.
      </p>
      <ul class="audience-links" aria-label="Segments">
        {props.segments.segments.map((s) => (
          <li>
            <a href={segmentPath(s.name)}>{s.name}</a>
          </li>
        ))}
      </ul>
      <p>
        Or go to the <a href="/">overview</a>.
      </p>
    </>
  );
}

function SegmentView(props: { segment: string; period: Period; session: Session; segments: Segments }) {
  const { segment, period } = props;
  const snapshots = useLoad('snapshots', () => allSnapshots(period));
  const movement = useLoad(`movement ${snapshots.state}`, async () => {
    if (snapshots.state !== 'ready') return undefined;
    const first = snapshots.data[0]?.date;
    const last = snapshots.data.at(-1)?.date;
    if (!last) return null;
    // The chosen period, or the step into the latest snapshot when none is chosen.
    const query = new URLSearchParams({ to: last });
    if (period.from && first && first !== last) query.set('from', first);
    return call<Movement>('GET', `/api/v1/movement?${query}`);
  });
  const info = props.segments.segments.find((s) => s.name === segment)!;
  const operator = props.session.role === 'operator';
  return (
    <>
      <Section title="Definition" id="definition">
        <Definition info={info} date={props.segments.date} />
      </Section>
      <Section title="Size over time" id="size">
        {snapshots.state === 'ready' ? (
          <SizeTrend
            segment={segment}
            snapshots={snapshots.data}
            colour={segmentColours(props.segments.segments.map((s) => s.name)).get(segment)}
          />
        ) : (
          <Status loaded={snapshots} />
        )}
      </Section>
      <Section title="Where its customers came from and went to" id="movement">
        {snapshots.state === 'failed' ? (
          <Status loaded={snapshots} />
        ) : movement.state === 'ready' && movement.data ? (
          <Moves
            segment={segment}
            movement={movement.data}
            latest={props.segments.date}
            operator={operator}
          />
        ) : movement.state === 'ready' ? (
          <p>No snapshot in this period yet.</p>
        ) : (
          <Status loaded={movement} />
        )}
      </Section>
      <Section title="Audiences" id="audiences">
        <Audiences segment={segment} />
      </Section>
      {operator && (
        <Section title="A sample of its customers" id="sample">
          <Sample segment={segment} />
        </Section>
      )}
    </>
  );
}

type SegmentInfo = Segments['segments'][number];

function Definition(props: { info: SegmentInfo; date: string | null }) {
  const { info } = props;
  const range = (r: [number, number] | null) => (r ? (r[0] === r[1] ? `${r[0]}` : `${r[0]}–${r[1]}`) : '–');
  return (
    <>
      <dl class="facts">
        <dt>Recency score</dt>
        <dd>{range(info.definition.recency)}</dd>
        <dt>Frequency score</dt>
        <dd>{range(info.definition.frequency)}</dd>
        <dt>Monetary score</dt>
        <dd>{range(info.definition.monetary)}</dd>
        <dt>RFM codes</dt>
        <dd class="codes">{info.definition.codes.join(', ') || '–'}</dd>
        <dt>Customers</dt>
        <dd>
          {count(info.customers)}
          {props.date ? ` on ${props.date}` : ''} ({share(info.share)} of all; {count(info.opted_out)} opted
          out)
        </dd>
      </dl>
      {info.action && (
        <p class="action">
          <strong>Suggested action:</strong> {info.action}
        </p>
      )}
    </>
  );
}

function SizeTrend(props: { segment: string; snapshots: Snapshot[]; colour: string | undefined }) {
  const rows = useMemo(
    () =>
      props.snapshots.map((s) => ({
        date: s.date,
        customers: s.segments.find((x) => x.segment === props.segment)?.customers ?? 0,
      })),
    [props.snapshots, props.segment],
  );
  const option = useMemo<ChartOption>(
    () => ({
      ...(props.colour ? { color: [props.colour] } : {}),
      grid: { left: 56, right: 16, top: 16, bottom: 32 },
      tooltip: {
        trigger: 'axis',
        confine: true,
        formatter: (params: unknown) => {
          const [p] = params as { value: number; axisValueLabel: string }[];
          return p ? `${escapeHtml(p.axisValueLabel)}: ${count(p.value)} customers` : '';
        },
      },
      xAxis: { type: 'category', boundaryGap: false, data: rows.map((r) => r.date) },
      yAxis: { type: 'value' },
      series: [
        {
          name: props.segment,
          type: 'line',
          areaStyle: { opacity: 0.15 },
          data: rows.map((r) => r.customers),
        },
      ],
    }),
    [rows, props.segment, props.colour],
  );
  if (rows.length === 0) return <p>No snapshot in this period.</p>;
  const first = rows[0]!.date;
  const last = rows.at(-1)!.date;
  const columns: Column<(typeof rows)[number]>[] = [
    { title: 'Date', value: (r) => r.date },
    { title: 'Customers', value: (r) => r.customers, show: (r) => count(r.customers), numeric: true },
  ];
  return (
    <>
      <Chart
        class="trend"
        label={`${props.segment}: customers at each snapshot from ${first} to ${last}`}
        option={option}
      />
      <DataTable
        caption={`${props.segment}: size from ${first} to ${last}`}
        filename={`segment-size-${props.segment}-${first}-${last}.csv`}
        columns={columns}
        rows={rows}
        folded
      />
    </>
  );
}

interface Move {
  step_from: string;
  step_to: string;
  direction: 'in' | 'out';
  /** The other side: where they came from (in) or went to (out); `new` and `gone` included. */
  other: string;
  customers: number;
}

function Moves(props: { segment: string; movement: Movement; latest: string | null; operator: boolean }) {
  const { segment, movement } = props;
  if (!movement.exact || !movement.steps)
    return (
      <p>
        Movement from {movement.from} to {movement.to} cannot be told exactly
        {movement.reason ? `: ${movement.reason}` : ''}.
      </p>
    );
  const rows: Move[] = movement.steps.flatMap((step) =>
    step.cells
      .filter((c) => (c.to === segment || c.from === segment) && c.customers > 0)
      .map((c) => ({
        step_from: step.from,
        step_to: step.to,
        direction: c.to === segment ? ('in' as const) : ('out' as const),
        other: c.to === segment ? c.from : c.to,
        customers: c.customers,
      }))
      .sort((a, b) =>
        a.direction === b.direction ? b.customers - a.customers : a.direction === 'in' ? -1 : 1,
      ),
  );
  const columns: Column<Move>[] = [
    { title: 'Between', value: (r) => `${r.step_from} → ${r.step_to}` },
    { title: 'Direction', value: (r) => (r.direction === 'in' ? 'came from' : 'went to') },
    { title: 'Segment', value: (r) => r.other },
    { title: 'Customers', value: (r) => r.customers, show: (r) => count(r.customers), numeric: true },
  ];
  // Samples are kept for the latest snapshot's own step only.
  const sampled = props.operator
    ? rows.filter((r) => r.direction === 'in' && r.step_to === props.latest && r.other !== 'gone')
    : [];
  return (
    <>
      <p>
        From {movement.from} to {movement.to}, in {movement.steps.length} step
        {movement.steps.length === 1 ? '' : 's'} (a customer's path is not kept, so steps are shown apart);
        “new” were not customers before, “gone” are no longer scored.
      </p>
      <DataTable
        caption={`${segment}: movement from ${movement.from} to ${movement.to}`}
        filename={`segment-movement-${segment}-${movement.from}-${movement.to}.csv`}
        columns={columns}
        rows={rows}
      />
      {sampled.length > 0 && <CellSamples segment={segment} cells={sampled} />}
    </>
  );
}

/** Operators only: a sample of the customers of one cell into this segment, loaded when asked for. */
function CellSamples(props: { segment: string; cells: Move[] }) {
  const [shown, setShown] = useState<{ from: string; text: string }>();
  const load = async (from: string) => {
    try {
      const query = new URLSearchParams({ from, to: props.segment });
      const s = await call<{ customer_ids: string[]; since: string | null; date: string }>(
        'GET',
        `/api/v1/movement/sample?${query}`,
      );
      setShown({
        from,
        text: s.customer_ids.length
          ? `${s.customer_ids.length} of the customers from ${from} (${s.since ?? '–'} → ${s.date}): ${s.customer_ids.join(', ')}`
          : `No customer ids are kept for ${from} → ${props.segment}.`,
      });
    } catch (e) {
      setShown({ from, text: (e as Error).message });
    }
  };
  return (
    <div class="actions">
      {props.cells.map((c) => (
        <button type="button" class="operator" onClick={() => void load(c.other)}>
          Sample from {c.other}
        </button>
      ))}
      <p role="status" class="sample">
        {shown?.text}
      </p>
    </div>
  );
}

async function audiencesOf(segment: string): Promise<AudienceHealth[]> {
  const query = new URLSearchParams({ segment });
  return (await call<Audiences>('GET', `/api/v1/audiences?${query}`)).audiences;
}

function Audiences(props: { segment: string }) {
  const audiences = useLoad('audiences', () => audiencesOf(props.segment));
  if (audiences.state !== 'ready') return <Status loaded={audiences} />;
  if (audiences.data.length === 0) return <p>No destination audience is built on this segment.</p>;
  const columns: Column<AudienceHealth>[] = [
    { title: 'Audience', value: (a) => a.audience },
    { title: 'Destination', value: (a) => a.destination },
    { title: 'Status', value: (a) => STATUSES[statusOf(a)] + (a.paused ? ' (paused)' : '') },
    { title: 'Expected', value: (a) => a.expected, show: (a) => count(a.expected), numeric: true },
    {
      title: 'Platform size',
      value: (a) => a.platform?.size ?? null,
      show: (a) => count(a.platform?.size),
      numeric: true,
    },
  ];
  return (
    <>
      <ul class="audience-links" aria-label="Audiences of this segment">
        {audiences.data.map((a) => (
          <li>
            <a href={audiencePath(a.destination, a.audience)}>
              {a.audience} on {a.destination}
            </a>{' '}
            <span class={`badge ${statusOf(a)}`}>{STATUSES[statusOf(a)]}</span>
          </li>
        ))}
      </ul>
      <DataTable
        caption={`Audiences of ${props.segment}`}
        filename={`audiences-${props.segment}.csv`}
        columns={columns}
        rows={audiences.data}
        folded
      />
    </>
  );
}

function Sample(props: { segment: string }) {
  const sample = useLoad('sample', () =>
    call<{ date: string; customer_ids: string[] }>(
      'GET',
      `/api/v1/segments/${encodeURIComponent(props.segment)}/sample`,
    ),
  );
  if (sample.state !== 'ready') return <Status loaded={sample} />;
  return (
    <p class="sample" aria-label="Customer ids">
      {sample.data.customer_ids.length} customer ids on {sample.data.date}:{' '}
      {sample.data.customer_ids.join(', ')}
    </p>
  );
}
