/** Memory figures of the current process from `/proc` (Linux), for the benchmarks' fixtures. */
import { readFileSync } from "node:fs"

const PAGE = pageSize()

/**
 * Linux: anonymous memory (JS heap, buffers, LevelDB's caches) in bytes, i.e. resident minus
 * shared pages from `/proc/self/statm`; the shared ones are mostly pages of mapped files, such as
 * the node binary and the LevelDB tables LevelDB mmaps for reading, which the kernel may drop at
 * any time. Undefined elsewhere.
 */
export function anonymous(): number | undefined {
  const pages = statm()
  return pages === undefined || PAGE === undefined ? undefined : (pages[0] - pages[1]) * PAGE
}

function statm(): [resident: number, shared: number] | undefined {
  try {
    const fields = readFileSync("/proc/self/statm", "latin1").split(" ").map(Number)
    return [fields[1] ?? 0, fields[2] ?? 0]
  } catch {
    return undefined
  }
}

/** The page size, from the RSS in bytes over the RSS in pages (a power of two). */
function pageSize(): number | undefined {
  const pages = statm()?.[0]
  if (pages === undefined || pages === 0) return undefined
  return 2 ** Math.round(Math.log2(process.memoryUsage.rss() / pages))
}

/** Peak memory seen by a {@link sampleMemory} sampler, in bytes. */
export interface MemoryPeaks {
  rssBefore: number
  peak: number
  peakAnon: number
  samples: number
}

/** Samples the RSS and its anonymous part every `intervalMs` until `stop()`, which gives the peaks. */
export function sampleMemory(intervalMs: number): { stop(): MemoryPeaks } {
  const peaks: MemoryPeaks = {
    rssBefore: process.memoryUsage.rss(),
    peak: 0,
    peakAnon: anonymous() ?? 0,
    samples: 0,
  }
  peaks.peak = peaks.rssBefore
  const timer = setInterval(() => {
    const rss = process.memoryUsage.rss()
    const anon = anonymous() ?? 0
    peaks.samples++
    if (rss > peaks.peak) peaks.peak = rss
    if (anon > peaks.peakAnon) peaks.peakAnon = anon
  }, intervalMs)
  return {
    stop() {
      clearInterval(timer)
      return peaks
    },
  }
}
