/**
 * The endpoint getters of the binding roles behave alike: before `open()` has resolved they throw
 * `PIRATE_NOT_OPEN` (the configured `tcp://…:*` is no address anyone can connect to); once open
 * they give the bound address with its port; after `close()` they still give it.
 */
import { describe, expect, it, onTestFinished } from "vitest"
import {
  LazyPirateClient,
  LazyPirateServer,
  ParanoidPirateQueue,
  PirateError,
  Sender,
} from "../../patterns/index.js"

const ANY = "tcp://127.0.0.1:*"
const BOUND = /^tcp:\/\/127\.0\.0\.1:[1-9]\d*$/

interface Role {
  open(): Promise<void>
  close(): Promise<void>
}

const roles: [string, () => Role, string[]][] = [
  ["Sender", () => new Sender({ bind: ANY }), ["endpoint"]],
  [
    "LazyPirateServer",
    () => new LazyPirateServer({ bind: ANY, handler: (request: unknown) => request }),
    ["endpoint"],
  ],
  [
    "ParanoidPirateQueue",
    () => new ParanoidPirateQueue({ frontend: ANY, backend: ANY }),
    ["frontendEndpoint", "backendEndpoint"],
  ],
]

function read(role: Role, getter: string): unknown {
  return (role as unknown as Record<string, unknown>)[getter]
}

describe.each(roles)("%s", (_name, create, getters) => {
  it.each(getters)("%s throws PIRATE_NOT_OPEN before open()", (getter) => {
    const role = create()
    let thrown: unknown
    try {
      read(role, getter)
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(PirateError)
    expect(thrown).toMatchObject({ code: "PIRATE_NOT_OPEN" })
  })

  it.each(getters)("%s is the bound address once open, and still after close()", async (getter) => {
    const role = create()
    onTestFinished(() => role.close())
    await role.open()
    const endpoint = read(role, getter)
    expect(endpoint).toMatch(BOUND)
    await role.close()
    expect(read(role, getter)).toBe(endpoint)
  })
})

describe("ParanoidPirateQueue", () => {
  it("binds its two endpoints apart", async () => {
    const queue = await ParanoidPirateQueue.open({ frontend: ANY, backend: ANY })
    onTestFinished(() => queue.close())
    expect(queue.frontendEndpoint).not.toBe(queue.backendEndpoint)
  })
})

describe("LazyPirateClient", () => {
  it("connects, so its endpoint is the configured one even before open()", async () => {
    const client = new LazyPirateClient({ connect: ["inproc://first", "inproc://second"] })
    onTestFinished(() => client.close())
    expect(client.endpoint).toBe("inproc://first")
    await client.open()
    expect(client.endpoint).toBe("inproc://first")
  })
})
