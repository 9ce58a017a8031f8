/**
 * Message ids: 16 lower-case hex digits of a counter that starts at the current time in µs and
 * grows by one per message. They sort in send order as strings, stay unique across restarts
 * (the counter resumes above the journal's last id and above the clock), and are stable: a
 * redelivered message keeps its id.
 */
export const ID_LENGTH = 16

export class IdGenerator {
  #next: number
  constructor(floor?: string) {
    const fromClock = Date.now() * 1000
    const fromFloor =
      floor !== undefined && /^[0-9a-f]{16}$/.test(floor) ? parseInt(floor, 16) + 1 : 0
    this.#next = Math.max(fromClock, fromFloor)
  }
  next(): string {
    const now = Date.now() * 1000
    if (now > this.#next) this.#next = now
    return (this.#next++).toString(16).padStart(ID_LENGTH, "0")
  }
}

export function isMessageId(value: unknown): value is string {
  return typeof value === "string" && /^[0-9a-f]{16}$/.test(value)
}
