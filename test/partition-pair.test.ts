/**
 * A sender pair under real network partitions: the primary, the backup and two workers each in
 * their own network namespace, all on one bridge (test/partition/netns.ts `createNetwork`), the
 * workers connected to both senders. Two faults:
 *
 * - only the pair link cut (a blackhole route between the two senders, both still reachable by
 *   the workers): never two actives, the workers never vote; with `whenAlone: "wait"` the
 *   active's replicated sends wait out the cut, with `"local"` they go on alone; healed, the
 *   primary stays active, the backup catches up, and every resolved send is handled;
 * - the active cut from everyone (its bridge port down): the workers vote, the backup takes over;
 *   healed, the two actives meet, the older epoch steps down, hands over what it resolved alone
 *   and catches up; every send that resolved on either side is handled.
 *
 * Needs root and iproute2, as test/partition.test.ts: skipped (saying why) otherwise, and a
 * failure under `CI=true` (see test/helpers/prereq.ts).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { describe, expect, it, onTestFinished } from "vitest"
import type { PairStats, SenderStats, WorkerStats } from "../patterns/index.js"
import { requirePrereq } from "./helpers/prereq.js"
import { waitFor } from "./helpers/wait.js"
import {
  NsChild,
  createNetwork,
  netnsUnavailable,
  type Line,
  type Network,
} from "./partition/netns.js"

const netns = requirePrereq("partition test", netnsUnavailable())

const SENDER = new URL("./partition/pair-sender.ts", import.meta.url)
const WORKER = new URL("./partition/worker.ts", import.meta.url)
const heartbeat = { heartbeatInterval: 200, liveness: 3 }
/** pair.timeout, by default heartbeatInterval × liveness. */
const TIMEOUT = heartbeat.heartbeatInterval * heartbeat.liveness
/** How long a cut lasts. */
const CUT = 5 * TIMEOUT
const HOSTS = ["primary", "backup", "w0", "w1"] as const
type HostName = (typeof HOSTS)[number]

const is =
  (type: string, extra: (l: Line) => boolean = () => true) =>
  (l: Line): boolean =>
    l.type === type && extra(l)

/** Both nodes' `stats().pair` at `t`; `line`: the index of the primary's stats line. */
type Sample = { t: number; line: number; primary: PairStats; backup: PairStats }

interface Setup {
  net: Network<HostName>
  primary: NsChild
  backup: NsChild
  workers: NsChild[]
  /** Every child's transcript is printed when the test fails. */
  children: NsChild[]
}

/**
 * The network, the pair (primary active, backup passive) and two workers connected to both; all
 * torn down when the test ends (processes first: a namespace with a process in it outlives
 * `ip netns del`).
 */
async function setup(whenAlone: "wait" | "local"): Promise<Setup> {
  const children: NsChild[] = []
  const net = createNetwork(HOSTS)
  const dir = mkdtempSync(join(tmpdir(), "pirate-pairnet-"))
  onTestFinished(async ({ task }) => {
    if (task.result?.state === "fail")
      for (const c of children) console.log(`${c.name} said:\n${c.transcript()}`)
    await Promise.all(children.map((c) => c.kill()))
    net.destroy()
    rmSync(dir, { recursive: true, force: true })
  })
  const start = (name: string, host: HostName, file: URL, config: object): NsChild => {
    const child = new NsChild(name, net.hosts[host].ns, file, config)
    children.push(child)
    return child
  }
  const node = (role: "primary" | "backup"): NsChild =>
    start(role, role, SENDER, {
      role,
      journal: join(dir, role),
      address: net.hosts[role].address,
      whenAlone,
      ...heartbeat,
    })
  const primary = node("primary")
  const backup = node("backup")
  const [pp, bp] = await Promise.all(
    [primary, backup].map(async (c) => (await c.waitFor(is("port"), 15_000, "port"))["port"]),
  )
  primary.command({ type: "open", peer: `tcp://${net.hosts.backup.address}:${String(bp)}` })
  backup.command({ type: "open", peer: `tcp://${net.hosts.primary.address}:${String(pp)}` })
  const endpoints = await Promise.all(
    [primary, backup].map(
      async (c) => (await c.waitFor(is("open"), 15_000, "open"))["endpoint"] as string,
    ),
  )
  expect(endpoints[0]).toMatch(/^tcp:\/\/10\.203\.0\.1:\d+$/)
  expect(endpoints[1]).toMatch(/^tcp:\/\/10\.203\.0\.2:\d+$/)
  await Promise.all([
    primary.waitFor(
      is("state", (l) => l["state"] === "active"),
      10_000,
      "primary active",
    ),
    backup.waitFor(
      is("state", (l) => l["state"] === "passive"),
      10_000,
      "backup passive",
    ),
  ])
  const workers = (["w0", "w1"] as const).map((host) =>
    start(`worker ${host}`, host, WORKER, {
      connect: endpoints,
      concurrency: 8,
      hold: false,
      ...heartbeat,
    }),
  )
  // Each worker has a session with both senders.
  for (const w of workers)
    for (const endpoint of endpoints)
      await w.waitFor(
        is("sender:ready", (l) => l["endpoint"] === endpoint),
        10_000,
        `session with ${endpoint}`,
      )
  return { net, primary, backup, workers, children }
}

async function stats(node: NsChild): Promise<{ stats: SenderStats; t: number; line: number }> {
  const line = await node.ask({ type: "stats" }, "stats")
  return { stats: line["stats"] as SenderStats, t: line.t, line: node.lines.indexOf(line) }
}

/** Both nodes' `stats().pair` every heartbeat interval for `ms`. */
async function watch(s: Setup, ms: number): Promise<Sample[]> {
  const samples: Sample[] = []
  const end = performance.now() + ms
  while (performance.now() < end) {
    const [p, b] = await Promise.all([stats(s.primary), stats(s.backup)])
    samples.push({
      t: p.t,
      line: p.line,
      primary: p.stats.pair as PairStats,
      backup: b.stats.pair as PairStats,
    })
    await sleep(heartbeat.heartbeatInterval)
  }
  return samples
}

/** Streams batches of 50 from `from` on, and waits until `count` of them resolved. */
async function streamed(node: NsChild, from: number, count: number): Promise<void> {
  node.command({ type: "stream", from, batch: 50 })
  await node.waitFor(
    is("resolved", (l) => (l["to"] as number) >= from + count),
    20_000,
    `${count} resolved from ${from}`,
  )
}

/** Stops a node's stream; resolves with its last line (`stopped` or `rejected`). */
async function stopStream(node: NsChild): Promise<Line> {
  const seen = node.lines.length
  node.command({ type: "stop" })
  return node.waitFor(
    (l) =>
      (l.type === "stopped" || l.type === "rejected") && node.lines.indexOf(l as never) >= seen,
    20_000,
    "the stream's end",
  )
}

/** The `n` of every resolved send of `nodes`. */
function resolved(nodes: NsChild[]): number[] {
  return nodes.flatMap((node) =>
    node.lines
      .filter(is("resolved"))
      .flatMap((l) =>
        Array.from(
          { length: (l["to"] as number) - (l["from"] as number) },
          (_, i) => (l["from"] as number) + i,
        ),
      ),
  )
}

/** Every resolved send of `nodes` handled by a worker (from their `done` lines). */
async function nothingLost(s: Setup, nodes: NsChild[]): Promise<{ sends: number; dups: number }> {
  const sends = resolved(nodes)
  expect(sends.length).toBeGreaterThan(0)
  return waitFor(
    () => {
      const counts = new Map<number, number>()
      for (const w of s.workers)
        for (const l of w.lines.filter(is("done")))
          counts.set(l["n"] as number, (counts.get(l["n"] as number) ?? 0) + 1)
      expect(sends.filter((n) => !counts.has(n)).slice(0, 10)).toEqual([])
      let dups = 0
      for (const c of counts.values()) dups += c - 1
      return { sends: sends.length, dups }
    },
    { timeout: 20_000, interval: 100 },
  )
}

/** The state lines of a node, as `state@epoch`. */
const states = (node: NsChild): string[] =>
  node.lines.filter(is("state")).map((l) => `${String(l["state"])}@${String(l["epoch"])}`)

describe("a sender pair under network partitions", () => {
  for (const whenAlone of ["wait", "local"] as const)
    it.runIf(netns)(
      `only the pair link cut (whenAlone "${whenAlone}"): never two actives and no vote; healed, the primary stays active, the backup catches up, nothing lost`,
      { timeout: 60_000 },
      async () => {
        const s = await setup(whenAlone)
        const { primary, backup, net } = s
        await streamed(primary, 0, 500)

        const cutAt = performance.now()
        net.block("primary", "backup")
        const samples = await watch(s, CUT)
        const workerStats = await Promise.all(
          s.workers.map(
            async (w) => (await w.ask({ type: "stats" }, "stats"))["stats"] as WorkerStats,
          ),
        )
        const healAt = performance.now()
        net.unblock("primary", "backup")

        // Never two actives: the backup stayed passive throughout, the primary active (every
        // sample, and the state events, which say every change).
        expect(samples.length).toBeGreaterThanOrEqual(CUT / heartbeat.heartbeatInterval / 2)
        for (const sample of samples) {
          expect(sample.primary.state).toBe("active")
          expect(sample.backup.state).toBe("passive")
        }
        // The workers kept their sessions with the active: none voted.
        expect(workerStats.map((w) => w.votes)).toEqual([0, 0])
        for (const w of s.workers) expect(w.lines.filter(is("vote"))).toEqual([])
        // Each side lost the other after pair.timeout; the active was alone (not replicated).
        const lostAt = samples.find(
          (x) => x.primary.peer === "lost" && x.backup.peer === "lost" && !x.primary.replicated,
        )
        expect(lostAt, "both lost their peer, the active not replicated").toBeDefined()
        expect((lostAt as Sample).t - cutAt).toBeGreaterThanOrEqual(
          TIMEOUT - heartbeat.heartbeatInterval,
        )
        expect(samples.at(-1)).toMatchObject({
          primary: { peer: "lost", replicated: false },
          backup: { peer: "lost" },
        })
        // The sends while alone: those of the stream after the active said it was alone (its
        // lines are in order, so exactly those after that stats line).
        const alone = (lostAt as Sample).line
        const during = primary.lines
          .slice(alone)
          .filter((l) => l.t < healAt && l.type === "resolved")
        expect(primary.lines.slice(alone).filter(is("rejected"))).toEqual([])
        if (whenAlone === "wait") expect(during).toEqual([])
        else expect(during.length).toBeGreaterThan(0)

        // Healed: the backup catches up (the active is replicated again), the waiting sends
        // resolve and the stream goes on.
        const { t: replicatedAt } = await waitFor(
          async () => {
            const p = await stats(primary)
            expect(p.stats.pair).toMatchObject({ state: "active", peer: "alive", replicated: true })
            return p
          },
          { timeout: 15_000, interval: 50 },
        )
        const last = primary.lines.filter(is("resolved")).at(-1) as Line
        await primary.waitFor(
          is("resolved", (l) => (l["to"] as number) >= (last["to"] as number) + 200),
          15_000,
          "200 more resolved after healing",
        )
        const end = await stopStream(primary)
        expect(end.type).toBe("stopped")
        expect((await stats(backup)).stats.pair).toMatchObject({ state: "passive", peer: "alive" })
        expect(states(primary)).toEqual(["active@1"])
        expect(states(backup)).toEqual(["passive@1"])
        const { sends, dups } = await nothingLost(s, [primary])
        console.log(
          `pair link cut (${whenAlone}): both lost the peer ${Math.round((lostAt as Sample).t - cutAt)} ms after the cut; ` +
            `${during.length} batches resolved while alone; replicated again ${Math.round(replicatedAt - healAt)} ms ` +
            `after healing; ${sends} sends resolved, all handled (${dups} twice)`,
        )
      },
    )

  it.runIf(netns)(
    'the active cut from everyone (whenAlone "local"): the backup takes over on the workers\' votes; healed, the older epoch steps down, hands over and catches up, nothing lost',
    { timeout: 60_000 },
    async () => {
      const s = await setup("local")
      const { primary, backup, net } = s
      await streamed(primary, 0, 500)

      const takeover = backup.waitFor(
        is("state", (l) => l["state"] === "active"),
        TIMEOUT * 5 + 5000,
        "backup active",
      )
      const cutAt = performance.now()
      net.cut("primary")
      const active = await takeover
      const votes = s.workers.flatMap((w) => w.lines.filter(is("vote")))
      expect(votes.length).toBeGreaterThan(0)
      expect(active["epoch"]).toBe(2)
      // Both are active now, each alone (a real split brain, the case 2.4 resolves): each
      // resolves sends locally, the backup's reach the workers, the primary's wait in its journal.
      const primaryFrom = (primary.lines.filter(is("resolved")).at(-1)?.["to"] as number) ?? 0
      await Promise.all([
        streamed(backup, 1_000_000, 300),
        primary.waitFor(
          is("resolved", (l) => (l["to"] as number) >= primaryFrom + 200),
          15_000,
          "the primary resolving alone",
        ),
      ])
      // Both stop there. What the primary resolved alone (a few hand-over pages) waits in its
      // journal for the heal. The backup's stream resumes once the primary caught up: with
      // whenAlone "local" nothing paces a producer while a returning passive catches up, and one
      // that outruns the full copy keeps it from ever ending (see the report of this test).
      expect((await stopStream(primary)).type).toBe("stopped")
      const backupNext = (await stopStream(backup))["next"] as number
      const [p, b] = await Promise.all([stats(primary), stats(backup)])
      expect(p.stats.pair).toMatchObject({ state: "active", epoch: 1, replicated: false })
      expect(b.stats.pair).toMatchObject({ state: "active", epoch: 2, replicated: false })

      const healAt = performance.now()
      const stepDown = primary.waitFor(
        is("state", (l) => l["state"] === "passive"),
        30_000,
        "primary passive",
      )
      net.heal("primary")
      const down = await stepDown
      const { t: replicatedAt } = await waitFor(
        async () => {
          const x = await stats(backup)
          expect(x.stats.pair).toMatchObject({ state: "active", peer: "alive", replicated: true })
          return x
        },
        { timeout: 15_000, interval: 50 },
      )
      // Replicated again: the stream goes on, each send acked by the passive.
      await streamed(backup, backupNext, 200)
      expect((await stopStream(backup)).type).toBe("stopped")
      expect(states(primary)).toEqual(["active@1", "passive@2"])
      expect(states(backup)).toEqual(["passive@1", "active@2"])
      const { sends, dups } = await nothingLost(s, [primary, backup])
      const aloneCount =
        resolved([primary]).length - resolved([primary]).filter((n) => n < primaryFrom).length
      console.log(
        `active cut from everyone: backup active ${Math.round(active.t - cutAt)} ms after the cut ` +
          `(${votes.length} votes); primary passive ${Math.round(down.t - healAt)} ms after healing, ` +
          `backup replicated ${Math.round(replicatedAt - healAt)} ms after; ${aloneCount} sends resolved by the primary alone; ${sends} sends resolved ` +
          `on either side, all handled (${dups} twice)`,
      )
    },
  )
})
