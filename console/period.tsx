/** A period of history, in the address (`?from=YYYY-MM-DD&to=YYYY-MM-DD`) so a view can be bookmarked and shared. */
export interface Period {
  from?: string;
  to?: string;
}

export function periodOf(search: string): Period {
  const q = new URLSearchParams(search);
  const from = q.get('from') || undefined;
  const to = q.get('to') || undefined;
  return { ...(from ? { from } : {}), ...(to ? { to } : {}) };
}

/** Chooses the period of the page at `action`, with a link back to all of its history. */
export function PeriodForm(props: { action: string; period: Period }) {
  return (
    <form method="get" action={props.action} class="period" aria-label="Period">
      <label>
        From <input type="date" name="from" value={props.period.from ?? ''} />
      </label>
      <label>
        To <input type="date" name="to" value={props.period.to ?? ''} />
      </label>
      <button type="submit">Show</button>
      {(props.period.from || props.period.to) && <a href={props.action}>All history</a>}
    </form>
  );
}
