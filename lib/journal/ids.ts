/**
 * Message ids: 16 lower-case hex digits of a counter that starts at the current time in µs and
 * grows by one per message. They sort in send order as strings, stay unique across restarts
 * (the counter resumes above the journal's last id and above the clock), and are stable: a
 * redelivered message keeps its id.
 */
export const ID_LENGTH = 16

/** "00" … "ff": the last two digits of an id, looked up rather than formatted. */
const HEX_BYTE = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

export class IdGenerator {
  /** The number of the next id. */
  #next: number
  /** The first 14 digits of the next id: they change once every 256 ids. */
  #prefix = ""
  /** The next id's lowest byte; 256 or more when `#prefix` must be computed again. */
  #low = 256
  /** 1, or 2 when every id has one parity (the two senders of a pair: docs/pair.md 6.3). */
  readonly #step: 1 | 2
  readonly #parity: 0 | 1

  /**
   * Ids above `floor` (the journal's last) and the clock; with `parity`, only even (0) or odd (1)
   * ones, so that two generators never draw the same id.
   */
  constructor(floor?: string, parity?: 0 | 1) {
    this.#step = parity === undefined ? 1 : 2
    this.#parity = parity ?? 0
    const fromClock = Date.now() * 1000
    const fromFloor =
      floor !== undefined && /^[0-9a-f]{16}$/.test(floor) ? parseInt(floor, 16) + 1 : 0
    this.#next = this.#aligned(Math.max(fromClock, fromFloor))
  }

  next(): string {
    const now = Date.now() * 1000
    if (now > this.#next) {
      this.#next = this.#aligned(now)
      this.#low = 256
    }
    // Formatting a number above 2^32 in hex is slow; do it once per 256 ids.
    if (this.#low >= 256) {
      this.#prefix = Math.floor(this.#next / 256)
        .toString(16)
        .padStart(ID_LENGTH - 2, "0")
      this.#low = this.#next % 256
    }
    this.#next += this.#step
    const id = this.#prefix + (HEX_BYTE[this.#low] as string)
    this.#low += this.#step
    return id
  }

  /** `n`, or the next number of this generator's parity. */
  #aligned(n: number): number {
    return this.#step === 1 || n % 2 === this.#parity ? n : n + 1
  }
}

/** The parity of an id's last digit: 0 for even, 1 for odd. */
export function idParity(id: string): 0 | 1 {
  // The last hex digit's value: "0"–"9" are 48–57, "a"–"f" 97–102 (no string made, no parse).
  const c = id.charCodeAt(id.length - 1)
  return ((c <= 57 ? c - 48 : c - 87) & 1) as 0 | 1
}

export function isMessageId(value: unknown): value is string {
  return typeof value === "string" && /^[0-9a-f]{16}$/.test(value)
}

/** The id just before `id` (ids are 16 hex digits), for a range that starts at `id`. */
export function previousId(id: string): string | undefined {
  const n = BigInt(`0x${id}`)
  return n === 0n ? undefined : (n - 1n).toString(16).padStart(id.length, "0")
}

/** The greater of two ids (ids sort as strings); undefined stands for none. */
export function maxId(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  return a > b ? a : b
}
