/**
 * The live output of `pirate demo` on stdout: in a terminal, two lines redrawn in place (a
 * cli-progress MultiBar) with the events printed above them; otherwise a plain line per second;
 * with --quiet, nothing but what is printed at the end.
 */
import { MultiBar, type SingleBar } from "cli-progress"

export type DisplayMode = "tty" | "plain" | "quiet"

/** What the progress lines show. */
export interface Snapshot {
  /** Messages whose `send()` resolved (as far as the parent has heard). */
  sent: number
  /** Distinct messages processed by some worker. */
  processed: number
  total: number
  /** Acks the sender received (all its runs, as far as they reported). */
  acked: number
  /** Messages handed to workers and not yet acked (the running sender). */
  inFlight: number
  /** Deliveries after a fault: requeued from a lost worker, or recovered from the journal. */
  redelivered: number
  /** Worker processes connected to the sender / alive. */
  workersConnected: number
  workersAlive: number
  sender: "starting" | "up" | "down"
  /**
   * A sender pair (`pirate demo --pair`): each node's state, and whether the active one has a
   * caught-up passive to replicate to. Shown instead of `sender`, on a line of its own.
   */
  pair?: { primary: PairNodeState; backup: PairNodeState; replicated: boolean }
  /** Seconds since the start. */
  elapsed: number
}

export type PairNodeState = "starting" | "active" | "passive" | "down"

const BAR_WIDTH = 24
/** Logged lines are written over the live lines: clear what they leave of them. */
const CLEAR_LINE = "\x1b[K"
/** Width of the time column in front of events. */
const STAMP = 9

export const fmt = (n: number): string => n.toLocaleString("en-US")
export const seconds = (s: number): string => `${s.toFixed(1)} s`

/**
 * Breaks `text` into lines of at most `width` characters at spaces: the first starts with
 * `first`, the others with `rest` (a hanging indent). A word longer than a line stays whole.
 */
export function wrap(text: string, width: number, first = "", rest = first): string[] {
  const lines: string[] = []
  let line = first
  let empty = true
  for (const word of text.split(" ")) {
    if (!empty && line.length + 1 + word.length > width) {
      lines.push(line)
      line = rest + word
    } else line += (empty ? "" : " ") + word
    empty = false
  }
  lines.push(line)
  return lines
}

export class Display {
  readonly mode: DisplayMode
  readonly #snapshot: () => Snapshot
  #multibar: MultiBar | undefined
  #lines: SingleBar[] = []
  #timer: NodeJS.Timeout | undefined

  /** `snapshot` is called whenever the lines are drawn. */
  constructor(mode: DisplayMode, snapshot: () => Snapshot) {
    this.mode = mode
    this.#snapshot = snapshot
  }

  start(): void {
    if (this.mode === "tty") {
      this.#multibar = new MultiBar({
        stream: process.stdout,
        format: (_options, _params, payload: { line?: string }) => payload.line ?? "",
        hideCursor: true,
        forceRedraw: true,
        fps: 8,
      })
      const multibar = this.#multibar
      this.#lines = this.#render().map((line) => multibar.create(1, 0, { line }))
      this.#timer = setInterval(() => this.#redraw(), 125)
    } else if (this.mode === "plain") {
      this.#timer = setInterval(() => this.#printLine(), 1000)
    }
    this.#timer?.unref()
  }

  /** A line about something that happened (a fault, a recovery), after the time it happened. */
  event(text: string): void {
    if (this.mode === "quiet") return
    const stamp = `${seconds(this.#snapshot().elapsed).padStart(STAMP - 2)}  `
    if (this.#multibar) {
      // The live lines turn line wrapping off: wrap to the terminal's width ourselves.
      const width = Math.max(40, (process.stdout.columns || 80) - 1)
      const lines = wrap(text, width, stamp, " ".repeat(STAMP + 2))
      this.#multibar.log(lines.map((line) => `${line}${CLEAR_LINE}\n`).join(""))
    } else process.stdout.write(`${stamp}${text}\n`)
  }

  /** A line of a child's own output, passed on as is (on stderr unless the live lines are up). */
  passthrough(line: string): void {
    if (this.#multibar) this.#multibar.log(`${line}${CLEAR_LINE}\n`)
    else process.stderr.write(`${line}\n`)
  }

  /**
   * Stops the timers and leaves the live lines as last drawn, with `final` in place of the
   * counters (which, after a crash, miss the last acks of the killed sender).
   */
  stop(final?: string): void {
    clearInterval(this.#timer)
    this.#timer = undefined
    if (this.#multibar) {
      this.#redraw(final)
      this.#multibar.stop()
      this.#multibar = undefined
    } else if (this.mode === "plain" && final !== undefined) {
      process.stdout.write(`${seconds(this.#snapshot().elapsed).padStart(STAMP - 2)}  ${final}\n`)
    }
  }

  #redraw(final?: string): void {
    this.#render().forEach((line, i) =>
      this.#lines[i]?.update(0, { line: i === 1 && final !== undefined ? ` ${final}` : line }),
    )
  }

  /** Two lines of at most 80 columns, three for a pair. */
  #render(): string[] {
    const s = this.#snapshot()
    const ratio = s.total > 0 ? Math.min(1, s.processed / s.total) : 1
    const full = Math.floor(ratio * BAR_WIDTH)
    const bar = "█".repeat(full) + "░".repeat(BAR_WIDTH - full)
    const pct = `${Math.floor(ratio * 100)}%`.padStart(4)
    return [
      ` processed ${bar} ${pct}  ${fmt(s.processed)}/${fmt(s.total)}  sent ${fmt(s.sent)}  ${seconds(s.elapsed)}`,
      ` ${counters(s)}`,
      ...(s.pair ? [` ${pairLine(s.pair)}`] : []),
    ]
  }

  #printLine(): void {
    const s = this.#snapshot()
    const pct = s.total > 0 ? Math.floor((100 * s.processed) / s.total) : 100
    process.stdout.write(
      `${seconds(s.elapsed).padStart(STAMP - 2)}  processed ${fmt(s.processed)}/${fmt(s.total)} (${pct}%) · sent ${fmt(s.sent)} · ${counters(s)}${s.pair ? ` · ${pairLine(s.pair)}` : ""}\n`,
    )
  }
}

function counters(s: Snapshot): string {
  return [
    `acked ${fmt(s.acked)}`,
    `in flight ${fmt(s.inFlight)}`,
    `redelivered ${fmt(s.redelivered)}`,
    `workers ${s.workersConnected}/${s.workersAlive}`,
    ...(s.pair ? [] : [`sender ${s.sender}`]),
  ].join(" · ")
}

function pairLine(p: NonNullable<Snapshot["pair"]>): string {
  const active = p.primary === "active" || p.backup === "active"
  const replication = !active
    ? ""
    : p.replicated
      ? " · replicated on both"
      : " · alone: new sends wait for a passive"
  return `primary ${p.primary} · backup ${p.backup}${replication}`
}
