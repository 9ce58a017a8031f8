import { afterEach, describe, expect, test, vi } from "vitest"
import { ID_LENGTH, IdGenerator, idParity, isMessageId } from "../../lib/journal/ids.js"

afterEach(() => {
  vi.restoreAllMocks()
})

const hex = (n: number): string => n.toString(16).padStart(ID_LENGTH, "0")

describe("IdGenerator", () => {
  test("ids are 16 lower-case hex digits", () => {
    const ids = new IdGenerator()
    for (let i = 0; i < 100; i++) expect(ids.next()).toMatch(/^[0-9a-f]{16}$/)
  })

  test("ids sort in creation order, as strings and as numbers, and are unique", () => {
    const ids = new IdGenerator()
    const made = Array.from({ length: 100_000 }, () => ids.next())
    expect(new Set(made).size).toBe(made.length)
    for (let i = 1; i < made.length; i++) {
      expect(made[i]! > made[i - 1]!).toBe(true)
      expect(parseInt(made[i]!, 16)).toBeGreaterThan(parseInt(made[i - 1]!, 16))
    }
  })

  test("with the clock standing still, ids count up by one, across every 256-id block", () => {
    vi.spyOn(Date, "now").mockReturnValue(1_700_000_000_000)
    const ids = new IdGenerator(hex(1_800_000_000_000_000 - 300)) // the floor: a block boundary ahead
    let last = ids.next()
    expect(last).toBe(hex(1_800_000_000_000_000 - 299))
    for (let i = 0; i < 1000; i++) {
      const id = ids.next()
      expect(parseInt(id, 16) - parseInt(last, 16), `${last} → ${id}`).toBe(1)
      expect(id).toBe(hex(parseInt(id, 16)))
      last = id
    }
  })

  test("with a parity, every id has it, across blocks and clock jumps, and two generators never meet", () => {
    const now = vi.spyOn(Date, "now").mockReturnValue(1_700_000_000_000)
    const even = new IdGenerator(hex(1_700_000_000_000_000 + 250), 0)
    const odd = new IdGenerator(hex(1_700_000_000_000_000 + 250), 1)
    const seen = new Set<string>()
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 700; i++) {
        for (const [ids, parity] of [
          [even, 0],
          [odd, 1],
        ] as const) {
          const id = ids.next()
          expect(idParity(id), id).toBe(parity)
          expect(id).toBe(hex(parseInt(id, 16)))
          expect(seen.has(id), id).toBe(false)
          seen.add(id)
        }
      }
      // The clock jumps ahead of both counters (each drew 1 400 µs of ids).
      now.mockReturnValue(1_700_000_000_000 + (round + 1) * 7)
    }
    const made = [...seen].filter((id) => idParity(id) === 1)
    for (let i = 1; i < made.length; i++) expect(made[i]! > made[i - 1]!).toBe(true)
    for (let n = 0; n < 32; n++) expect(idParity(hex(n)), hex(n)).toBe(n % 2)
    expect(new IdGenerator(hex(1_800_000_000_000_001), 1).next()).toBe(hex(1_800_000_000_000_003))
    expect(new IdGenerator(hex(1_800_000_000_000_001), 0).next()).toBe(hex(1_800_000_000_000_002))
  })

  test("ids start at the clock in microseconds", () => {
    vi.spyOn(Date, "now").mockReturnValue(1_700_000_000_000)
    expect(new IdGenerator().next()).toBe(hex(1_700_000_000_000_000))
  })

  test("ids follow the clock when it is ahead of the counter", () => {
    const now = vi.spyOn(Date, "now").mockReturnValue(1_700_000_000_000)
    const ids = new IdGenerator()
    ids.next()
    now.mockReturnValue(1_700_000_000_005)
    expect(ids.next()).toBe(hex(1_700_000_000_005_000))
  })

  test("ids keep growing when the clock goes backwards", () => {
    const now = vi.spyOn(Date, "now").mockReturnValue(1_700_000_000_000)
    const ids = new IdGenerator()
    const a = ids.next()
    now.mockReturnValue(1_600_000_000_000)
    const b = ids.next()
    expect(b > a).toBe(true)
    expect(new IdGenerator(b).next() > b).toBe(true)
  })

  test("a floor above the clock is respected (ids stay unique across restarts)", () => {
    vi.spyOn(Date, "now").mockReturnValue(1_700_000_000_000)
    const floor = hex(1_800_000_000_000_000)
    const ids = new IdGenerator(floor)
    const first = ids.next()
    expect(first).toBe(hex(1_800_000_000_000_001))
    expect(ids.next()).toBe(hex(1_800_000_000_000_002))
  })

  test("a floor below the clock does not hold ids back", () => {
    vi.spyOn(Date, "now").mockReturnValue(1_700_000_000_000)
    expect(new IdGenerator(hex(5)).next()).toBe(hex(1_700_000_000_000_000))
  })

  test("a floor that is not an id is ignored", () => {
    vi.spyOn(Date, "now").mockReturnValue(1_700_000_000_000)
    for (const floor of ["", "zzzzzzzzzzzzzzzz", "FFFFFFFFFFFFFFFF", "123", hex(1) + "0"]) {
      expect(new IdGenerator(floor).next()).toBe(hex(1_700_000_000_000_000))
    }
  })

  test("a generator seeded with the last id of another never repeats its ids", () => {
    const first = new IdGenerator()
    const made = Array.from({ length: 1_000 }, () => first.next())
    const second = new IdGenerator(made.at(-1))
    const more = Array.from({ length: 1_000 }, () => second.next())
    expect(more[0]! > made.at(-1)!).toBe(true)
    expect(new Set([...made, ...more]).size).toBe(2_000)
  })

  test("ids stay exact well past today (below 2^53)", () => {
    vi.spyOn(Date, "now").mockReturnValue(4_000_000_000_000) // year 2096
    const ids = new IdGenerator()
    const a = ids.next()
    expect(parseInt(ids.next(), 16) - parseInt(a, 16)).toBe(1)
  })
})

describe("isMessageId", () => {
  test("accepts exactly 16 lower-case hex digits", () => {
    expect(isMessageId(new IdGenerator().next())).toBe(true)
    expect(isMessageId("0123456789abcdef")).toBe(true)
    for (const bad of [
      "0123456789ABCDEF",
      "0123456789abcde",
      "0123456789abcdef0",
      "g123456789abcdef",
      "",
      42,
      null,
      undefined,
    ]) {
      expect(isMessageId(bad)).toBe(false)
    }
  })
})

describe("writeId", () => {
  test("writes the same 8 bytes as Buffer's hex encoding, for every digit in every place", async () => {
    const { writeId } = await import("../../lib/journal/level-format.js")
    const digits = "0123456789abcdef"
    const ids = [
      "0".repeat(16),
      "f".repeat(16),
      ...Array.from({ length: 16 }, (_, place) =>
        Array.from({ length: 16 }, (_, i) => digits[(i + place) % 16]).join(""),
      ),
      ...Array.from({ length: 1000 }, (_, i) => hex(Date.now() * 1000 + i * 7919)),
    ]
    for (const id of ids) {
      const mine = Buffer.alloc(12, 0xee)
      const theirs = Buffer.alloc(12, 0xee)
      expect(writeId(mine, id, 2)).toBe(10)
      theirs.write(id, 2, 8, "hex")
      expect(mine.toString("hex"), id).toBe(theirs.toString("hex"))
    }
  })
})
