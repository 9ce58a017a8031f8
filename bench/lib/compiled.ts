/**
 * The benchmarks measure the library as its users run it: plain JavaScript, not TypeScript
 * loaded through tsx. tsx compiles with esbuild's `keepNames`, which wraps every function created
 * at run time in a `__name()` call, and a process loaded through it carries ~28 MB of tooling.
 *
 * So the library and every fixture a benchmark forks are bundled once per process with esbuild
 * into `bench/results/.compiled/` (inside the repository, so that npm packages resolve from its
 * node_modules; they stay external, loaded as installed).
 */
import { buildSync } from "esbuild"
import { relative } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const ROOT = fileURLToPath(new URL("../../", import.meta.url))
const OUT = fileURLToPath(new URL("../results/.compiled/", import.meta.url))
const built = new Map<string, URL>()

/** Bundles the TypeScript module `source` into one JavaScript file; returns that file's URL. */
export function compiled(source: URL): URL {
  const cached = built.get(source.href)
  if (cached) return cached
  const entry = fileURLToPath(source)
  const outfile = OUT + relative(ROOT, entry).replace(/\.ts$/, ".mjs")
  buildSync({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    logLevel: "error",
  })
  const url = pathToFileURL(outfile)
  built.set(source.href, url)
  return url
}

/** The library's public entry point (`zeromq-pirate`), compiled. */
export async function loadLibrary(): Promise<typeof import("../../patterns/index.js")> {
  return (await import(
    compiled(new URL("../../patterns/index.ts", import.meta.url)).href
  )) as typeof import("../../patterns/index.js")
}
