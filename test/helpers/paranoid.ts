import { onTestFinished } from "vitest"
import { Sender, Worker, type SenderOptions, type WorkerOptions } from "../../patterns/index.js"

/** Opens a sender on a free loopback port; closed when the test finishes. */
export async function openSender(options: Partial<SenderOptions> = {}): Promise<Sender> {
  const sender = await Sender.open({
    bind: "tcp://127.0.0.1:*",
    heartbeatInterval: 100,
    ...options,
  })
  onTestFinished(() => sender.close())
  return sender
}

/** Opens an in-process worker with fast heartbeats; closed when the test finishes. */
export async function openWorker(
  connect: string | string[],
  options: Partial<WorkerOptions> & Pick<WorkerOptions, "handler">,
): Promise<Worker> {
  const worker = await Worker.open({
    connect,
    heartbeatInterval: 100,
    liveness: 3,
    reconnect: { initial: 50, max: 400 },
    closeTimeout: 1000,
    ...options,
  })
  onTestFinished(() => worker.close())
  return worker
}

/** The ids (or reasons) of the sender's `message:dead`, `message:requeued` and `worker:lost` events. */
export function watchEvents(sender: Sender): {
  dead: string[]
  requeued: string[]
  lost: string[]
} {
  const seen = { dead: [] as string[], requeued: [] as string[], lost: [] as string[] }
  sender.on("message:dead", (e) => seen.dead.push(e.id))
  sender.on("message:requeued", (e) => seen.requeued.push(e.id))
  sender.on("worker:lost", (e) => seen.lost.push(e.reason))
  return seen
}
