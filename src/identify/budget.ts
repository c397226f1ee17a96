/**
 * The memory a process's runs hold in identity tables at once (`sync.table_memory_mb`). A worker runs two
 * jobs at once by default: with small audiences that overlaps one's waiting on the platform with the
 * other's work, but two of the largest audiences' tables together are what sets a worker's peak (at 10 M
 * customers and three identifiers each, 1.61 GB against 1.38 GB one at a time, in the same time). A run
 * takes its table's bytes before it identifies and gives them back when it ends; a run that does not fit
 * waits, in the order they asked, until the others give back enough. A run alone is never kept waiting,
 * however large its table.
 */
export class MemoryBudget {
  private held = 0;
  private readonly waiting: { bytes: number; admit: () => void }[] = [];

  /** In bytes; a worker sets it from each run's config (a lower one holds new runs back, never a running one). */
  constructor(public limit: number) {}

  /** Bytes held by runs now. */
  get used(): number {
    return this.held;
  }

  /**
   * Takes `bytes` when they fit beside what is held (or nothing is), else waits its turn: resolves to the
   * function that gives them back (once; later calls do nothing). Rejects with the signal's reason when it
   * aborts first. `onWait` is called when the run has to wait, with what is held then.
   */
  async take(bytes: number, signal?: AbortSignal, onWait?: (held: number) => void): Promise<() => void> {
    signal?.throwIfAborted();
    const release = this.giver(bytes);
    if (this.waiting.length === 0 && this.fits(bytes)) {
      this.held += bytes;
      return release;
    }
    onWait?.(this.held);
    await new Promise<void>((resolve, reject) => {
      const entry = {
        bytes,
        admit: () => {
          signal?.removeEventListener('abort', abort);
          resolve();
        },
      };
      const abort = () => {
        this.waiting.splice(this.waiting.indexOf(entry), 1);
        // The one behind may fit now that this one is gone.
        this.admit();
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', abort, { once: true });
      this.waiting.push(entry);
    });
    return release;
  }

  /**
   * Takes `bytes` only when they fit now beside what is held and no run waits, never waiting: for a table
   * made ahead of its run, which is worth making only with memory to spare. Returns the function that
   * gives them back (as `take` resolves to), or undefined when they do not fit.
   */
  tryTake(bytes: number): (() => void) | undefined {
    if (this.waiting.length > 0 || this.held + bytes > this.limit) return undefined;
    this.held += bytes;
    return this.giver(bytes);
  }

  /** The function that gives `bytes` back, once (later calls do nothing). */
  private giver(bytes: number): () => void {
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.held -= bytes;
      this.admit();
    };
  }

  private fits(bytes: number): boolean {
    return this.held === 0 || this.held + bytes <= this.limit;
  }

  /** Lets in the runs at the head of the line that fit now, in order. */
  private admit(): void {
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.bytes)) {
      const next = this.waiting.shift()!;
      this.held += next.bytes;
      next.admit();
    }
  }
}
