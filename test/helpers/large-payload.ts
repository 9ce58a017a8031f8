import { createHash } from "node:crypto"

/** A payload of `size` bytes that only `id` gives: its bytes are a hash chain seeded with it. */
export function largePayload(id: string, size: number): Buffer {
  const out = Buffer.allocUnsafe(size)
  let block = createHash("sha256").update(id).digest()
  for (let at = 0; at < size; at += block.length) {
    block.copy(out, at, 0, Math.min(block.length, size - at))
    if (at + block.length < size && at % 4096 === 0)
      block = createHash("sha256").update(block).digest()
  }
  return out
}
