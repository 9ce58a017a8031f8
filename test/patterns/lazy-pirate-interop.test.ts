/** Raw Lazy Pirate against a plain REP server written in Python (python3-zmq). */
import { describe, expect, it } from "vitest"
import { openClient } from "../helpers/lazy-helpers.js"
import { pythonMissing, requirePrereq } from "../helpers/prereq.js"
import { startPythonEcho } from "../helpers/processes.js"

const python = requirePrereq("Lazy Pirate interop with Python", pythonMissing("zmq"))

describe.runIf(python)("Lazy Pirate: raw interop with a Python REP server", () => {
  it("codec raw: single-frame requests, Buffer replies, concurrent requests", async () => {
    const { endpoint } = await startPythonEcho()
    const client = openClient({ connect: endpoint, codec: "raw", timeout: 1_000 })
    const reply = await client.request("hello, python")
    expect(Buffer.isBuffer(reply)).toBe(true)
    expect(String(reply)).toBe("hello, python")
    await expect(client.request(Buffer.from([0, 1, 2, 255]))).resolves.toEqual(
      Buffer.from([0, 1, 2, 255]),
    )
    await expect(client.request("")).resolves.toEqual(Buffer.alloc(0))
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => client.request(`n${i}`)))
    expect(many.map(String)).toEqual(Array.from({ length: 20 }, (_, i) => `n${i}`))
  })

  it("a stalled REP server: the retry gets the right answer, the late reply is lost", async () => {
    const { endpoint } = await startPythonEcho(["--stall", "2", "--stall-ms", "250"])
    const client = openClient({ connect: endpoint, codec: "raw", timeout: 120, retries: 6 })
    let retries = 0
    client.on("request:retry", () => retries++)
    await expect(client.request("one")).resolves.toEqual(Buffer.from("one"))
    await expect(client.request("two")).resolves.toEqual(Buffer.from("two"))
    expect(retries).toBeGreaterThanOrEqual(1)
    await expect(client.request("three")).resolves.toEqual(Buffer.from("three"))
    await expect(client.request("four")).resolves.toEqual(Buffer.from("four"))
  })

  it("a framed (msgpack) client gets PIRATE_PROTOCOL from a plain REP server, not a timeout", async () => {
    const { endpoint } = await startPythonEcho()
    const client = openClient({ connect: endpoint, timeout: 1_000 })
    await expect(client.request({ hello: 1 })).rejects.toMatchObject({
      code: "PIRATE_PROTOCOL",
      message: expect.stringContaining('codec: "raw"') as unknown,
    })
  })
})
