import { downloadCsv } from './csv.js';

export interface Column<Row> {
  title: string;
  /** The value in the CSV (a plain number, not formatted). */
  value: (row: Row) => string | number | null;
  /** How the table shows it (default: the value as it is). */
  show?: (row: Row) => string;
  numeric?: boolean;
  /** Where the cell leads (a page about it), if anywhere. */
  link?: (row: Row) => string | undefined;
}

/** A table of the numbers behind a chart or a list, with its CSV download (the same rows and columns). */
export function DataTable<Row>(props: {
  caption: string;
  filename: string;
  columns: Column<Row>[];
  rows: Row[];
  /** Shown folded (behind a chart that already shows the numbers). */
  folded?: boolean;
}) {
  const { columns, rows } = props;
  const download = () =>
    downloadCsv(
      props.filename,
      columns.map((c) => c.title),
      rows.map((r) => columns.map((c) => c.value(r))),
    );
  const table = (
    <div class="table-wrap">
      <table>
        <caption>{props.caption}</caption>
        <thead>
          <tr>
            {columns.map((c) => (
              <th scope="col" class={c.numeric ? 'num' : undefined}>
                {c.title}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr>
              {columns.map((c, k) => {
                const text = c.show ? c.show(r) : String(c.value(r) ?? '');
                const href = c.link?.(r);
                const shown = href ? <a href={href}>{text}</a> : text;
                return k === 0 ? (
                  <th scope="row">{shown}</th>
                ) : (
                  <td class={c.numeric ? 'num' : undefined}>{shown}</td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
  const button = (
    <button type="button" class="csv" onClick={download}>
      Download CSV<span class="visually-hidden">: {props.caption}</span>
    </button>
  );
  return props.folded ? (
    <details class="numbers">
      <summary>Table: {props.caption}</summary>
      {button}
      {table}
    </details>
  ) : (
    <div class="numbers">
      {button}
      {table}
    </div>
  );
}
