import Papa from 'papaparse';

/** A table's header and rows as a CSV file the browser downloads. */
export function downloadCsv(filename: string, fields: string[], rows: (string | number | null)[][]): void {
  // escapeFormulae: a name starting with = + - @ is not run as a formula by a spreadsheet.
  const text = Papa.unparse({ fields, data: rows }, { newline: '\r\n', escapeFormulae: true });
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv;charset=utf-8' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
