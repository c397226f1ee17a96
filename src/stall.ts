import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/**
 * The longest the event loop was held up while some work ran: what starves timers (a lease's renewal, a
 * job lock's) and every other run in the process. A histogram of timer delays sampled every 10 ms (Node's
 * `monitorEventLoopDelay`); `longestMs` is its maximum since the watch started.
 */
export class StallWatch {
  private readonly histogram: IntervalHistogram;

  constructor() {
    this.histogram = monitorEventLoopDelay({ resolution: 10 });
    this.histogram.enable();
  }

  /** The longest stall so far, in milliseconds (0 before the first sample). */
  longestMs(): number {
    return this.histogram.count === 0 ? 0 : Math.round(this.histogram.max / 1e6);
  }

  stop(): number {
    this.histogram.disable();
    return this.longestMs();
  }
}
