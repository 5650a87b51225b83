/**
 * A plain-text progress bar on stderr: `[#######.............]  7/24  29%  etcd put ×64 (round
 * 1/3)  0:42 elapsed, ~1:45 left`. On a terminal it redraws one line with a carriage return every
 * half second; elsewhere (a CI log, a pipe) it prints one line per phase.
 */

const BAR_WIDTH = 24;
const REDRAW_MS = 500;

/** `m:ss` for a duration in milliseconds. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** The bar's text for `done` of `total` units of planned time. */
export function renderBar(doneMs: number, totalMs: number, label: string, elapsedMs: number): string {
  const fraction = totalMs > 0 ? Math.min(1, doneMs / totalMs) : 1;
  const filled = Math.round(fraction * BAR_WIDTH);
  const left = fraction > 0.02 ? `~${formatDuration((elapsedMs / fraction) * (1 - fraction))} left` : 'estimating';
  return `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}%  ${label}  ${formatDuration(elapsedMs)} elapsed, ${left}`;
}

export class ProgressBar {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #totalMs: number;
  readonly #totalPhases: number;
  readonly #started = performance.now();
  #doneMs = 0;
  #phase = 0;
  #phaseMs = 0;
  #phaseStart = 0;
  #label = '';
  #lastWidth = 0;
  #timer: NodeJS.Timeout | undefined;

  /** `totalMs`: the planned measuring time of all phases; `totalPhases`: how many there are. */
  constructor(totalMs: number, totalPhases: number, out: NodeJS.WriteStream = process.stderr) {
    this.#out = out;
    this.#tty = out.isTTY === true;
    this.#totalMs = totalMs;
    this.#totalPhases = totalPhases;
  }

  /** Starts the next phase, planned to take `plannedMs`. */
  phase(label: string, plannedMs: number): void {
    this.#doneMs += this.#phaseMs;
    this.#phase++;
    this.#phaseMs = plannedMs;
    this.#phaseStart = performance.now();
    this.#label = `${String(this.#phase).padStart(String(this.#totalPhases).length)}/${this.#totalPhases} ${label}`;
    if (this.#tty) {
      this.#timer ??= setInterval(() => this.#draw(), REDRAW_MS).unref();
      this.#draw();
    } else {
      this.#out.write(`${this.#text()}\n`);
    }
  }

  /** Prints a line of its own (above the bar on a terminal). */
  note(text: string): void {
    if (this.#tty && this.#lastWidth > 0) this.#out.write(`\r${' '.repeat(this.#lastWidth)}\r`);
    this.#out.write(`${text}\n`);
    if (this.#tty && this.#phase > 0) this.#draw();
  }

  /** Clears the bar and stops redrawing. */
  finish(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#tty && this.#lastWidth > 0) this.#out.write(`\r${' '.repeat(this.#lastWidth)}\r`);
    this.#lastWidth = 0;
  }

  #text(): string {
    const inPhase = Math.min(this.#phaseMs, performance.now() - this.#phaseStart);
    return renderBar(this.#doneMs + inPhase, this.#totalMs, this.#label, performance.now() - this.#started);
  }

  #draw(): void {
    const text = this.#text();
    this.#out.write(`\r${text.padEnd(this.#lastWidth)}`);
    this.#lastWidth = text.length;
  }
}
