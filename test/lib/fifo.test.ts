import { describe, expect, test } from "vitest"
import { Fifo } from "../../lib/fifo.js"

describe("Fifo", () => {
  test("at(i) reads the item i places after the oldest, across shifts and compactions", () => {
    const q = new Fifo<number>()
    for (let n = 0; n < 5000; n++) q.push(n)
    for (let n = 0; n < 3000; n++) expect(q.shift()).toBe(n) // compacts past 1 024 shifted
    expect(q.length).toBe(2000)
    expect(q.at(0)).toBe(3000)
    expect(q.at(1999)).toBe(4999)
    expect(q.at(2000)).toBeUndefined()
    expect(q.at(-1)).toBeUndefined()
    expect(q.peek()).toBe(q.at(0))
  })
})
