import { type EventEmitter, once } from "node:events"
import { describe, expect, onTestFinished, test } from "vitest"
import { Dealer } from "zeromq"
import { MemoryJournal } from "../../lib/journal/memory.js"
import { PairLink, type PairLinkEvents, type PairLinkOptions } from "../../lib/pair/link.js"
import { ReplicatedJournal, type ReplicationRecord } from "../../lib/pair/replicated-journal.js"
import { DEDUPE_IDS, everyChange } from "../helpers/journal-changes.js"
import { journalContents } from "../helpers/journal-contents.js"
import { freePorts } from "../helpers/pair.js"
import { forkFixture } from "../helpers/processes.js"

const HEARTBEAT = 100

async function link(options: Omit<PairLinkOptions, "bind"> & { bind?: string }): Promise<PairLink> {
  const l = new PairLink({ bind: "tcp://127.0.0.1:*", heartbeatInterval: HEARTBEAT, ...options })
  onTestFinished(() => l.close())
  await l.open()
  return l
}

function next<K extends keyof PairLinkEvents>(
  l: PairLink,
  event: K,
  ms = 4000,
): Promise<PairLinkEvents[K]> {
  return once(l as EventEmitter, event, { signal: AbortSignal.timeout(ms) }) as Promise<
    PairLinkEvents[K]
  >
}

describe("PairLink", () => {
  test("two processes: the primary becomes active, the backup passive; the stream is applied and acked; a killed backup is lost, the primary stays active", async () => {
    const a = await link({ role: "primary" })
    const active = next(a, "state")
    const child = forkFixture("pair-node.ts", [a.endpoint ?? "", String(HEARTBEAT)])
    const ready = await child.waitFor((m) => m["type"] === "ready")
    a.connect(String(ready["endpoint"]))
    const [state] = await active
    expect(state).toMatchObject({ state: "active", epoch: 1, reason: "peer-backup" })
    await child.waitFor((m) => m["type"] === "state" && m["state"] === "passive")

    const stream = "00112233aabbccdd"
    const records: ReplicationRecord[] = []
    const journal = new ReplicatedJournal(new MemoryJournal(), {
      onRecord: (r) => {
        records.push(r)
        a.sendRecords(stream, [r])
      },
    })
    await journal.open()
    const acks: number[] = []
    a.on("ack", (ack) => {
      expect(ack.stream).toBe(stream)
      acks.push(ack.seq)
    })
    await everyChange(journal)
    const last = records.length
    expect(last).toBeGreaterThan(5)
    await child.waitFor((m) => m["type"] === "applied" && m["seq"] === last)
    const asked = child.waitFor((m) => m["type"] === "contents")
    child.process.send({ type: "contents" })
    const { contents } = await asked
    expect(contents).toEqual(await journalContents(journal, DEDUPE_IDS))
    await expect.poll(() => acks.at(-1)).toBe(last)

    const lost = next(a, "peer:lost")
    await child.kill("SIGKILL")
    await lost
    expect(a.peerStatus).toBe("lost")
    expect(a.state).toBe("active")
    expect(child.messages.filter((m) => m["type"] === "error")).toEqual([])
  })

  test("failover: the passive takes over on a vote once the active is silent, and the returning primary becomes passive", async () => {
    const a = await link({ role: "primary" })
    const b = await link({ role: "backup" })
    const aActive = next(a, "state")
    const bPassive = next(b, "state")
    a.connect(b.endpoint ?? "")
    b.connect(a.endpoint ?? "")
    expect((await aActive)[0].state).toBe("active")
    expect((await bPassive)[0].state).toBe("passive")

    // A vote while the active talks changes nothing.
    b.vote()
    expect(b.state).toBe("passive")

    const lost = next(b, "peer:lost")
    await a.close()
    await lost
    const takeover = next(b, "state")
    b.vote()
    expect((await takeover)[0]).toMatchObject({ state: "active", epoch: 2, reason: "failover" })

    // It restarts on its address, where b's DEALER keeps trying.
    const a2 = await link({
      role: "primary",
      bind: a.endpoint ?? "",
      peer: b.endpoint ?? "",
      epoch: a.epoch,
    })
    const passive = next(a2, "state")
    expect((await passive)[0]).toMatchObject({ state: "passive", epoch: 2, reason: "peer-active" })
    expect(b.state).toBe("active")
  })

  test("a node that became active while its peer was away is heard as active, not as the starting backup it was, when the peer comes", async () => {
    const [port] = await freePorts(1)
    const at = `tcp://127.0.0.1:${String(port)}`
    // The backup starts alone: its DEALER to the primary's address holds its HELLO ("backup").
    const b = await link({ role: "backup", peer: at })
    await next(b, "peer:lost")
    const active = next(b, "state")
    b.vote()
    expect((await active)[0]).toMatchObject({ state: "active", reason: "alone" })
    // The primary comes: it must hear "active" (and step aside), never the stale "backup" (which
    // would make it active too).
    const a = await link({ role: "primary", bind: at, peer: b.endpoint ?? "" })
    const states: string[] = []
    a.on("state", ({ state }) => states.push(state))
    await next(a, "state")
    expect(states).toEqual(["passive"])
    expect(b.state).toBe("active")
  })

  test("messages without a HELLO and malformed ones are dropped and change nothing", async () => {
    const a = await link({ role: "primary" })
    const dealer = new Dealer({ linger: 0 })
    onTestFinished(() => dealer.close())
    dealer.connect(a.endpoint ?? "")
    const dropped: string[] = []
    a.on("dropped", ({ reason }) => dropped.push(reason))
    await dealer.send([Buffer.from([0x31]), Buffer.from([0x80])]) // HEARTBEAT before HELLO
    await dealer.send([Buffer.from([0x30]), Buffer.from("not msgpack \xc1")]) // bad HELLO
    await dealer.send(Buffer.from("xx")) // no command byte
    await expect.poll(() => dropped.length).toBe(3)
    expect(dropped).toEqual([
      "a message from a connection without HELLO",
      "a malformed HELLO",
      "a message without a command",
    ])
    expect(a.state).toBe("primary")
    expect(a.peerStatus).toBe("unknown")
  })
})
