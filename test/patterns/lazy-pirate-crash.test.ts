/** A Lazy Pirate server that crashes mid-request and comes back: the client's request succeeds. */
import { describe, expect, it } from "vitest"
import { openClient } from "../helpers/lazy-helpers.js"
import { forkFixture } from "../helpers/processes.js"

describe("Lazy Pirate: server crash and restart", () => {
  it("a request survives a SIGKILL of its server and a restart on the same endpoint", async () => {
    // The first server takes the request and hangs on it: it is killed holding it.
    const first = forkFixture("lp-server.ts", ["tcp://127.0.0.1:*", "hang"])
    const { endpoint } = (await first.waitFor((m) => m["type"] === "ready")) as { endpoint: string }
    const client = openClient({ connect: endpoint, timeout: 250, retries: 40 })
    let retries = 0
    client.on("request:retry", () => retries++)
    const reply = client.request({ order: 66 })
    await expect(first.waitFor((m) => m["type"] === "request")).resolves.toMatchObject({
      payload: { order: 66 },
    })
    await first.kill("SIGKILL")
    expect(first.process.signalCode).toBe("SIGKILL")

    // A second server binds the same port (the first one's endpoint) and answers.
    const second = forkFixture("lp-server.ts", [endpoint, "echo"])
    await second.waitFor((m) => m["type"] === "ready")
    await expect(reply).resolves.toEqual({ echo: { order: 66 }, pid: second.process.pid })
    expect(retries).toBeGreaterThanOrEqual(1)

    // The client keeps working against the restarted server.
    await expect(client.request("next")).resolves.toEqual({ echo: "next", pid: second.process.pid })
  })
})
