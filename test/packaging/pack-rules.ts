/**
 * What the published tarball must hold, as a pure function of its file list: the entry points
 * package.json names, the CLI, the README with every relative link it makes, LICENSE, CHANGELOG,
 * the docs; no source map without its sources, nothing from test/, bench/ or CI.
 * `check-pack.ts` runs it on `npm pack --json`; `pack-rules.test.ts` shows each rule failing.
 */
import { posix } from "node:path"

/** The fields of package.json that say what the tarball must contain. */
export interface PackageManifest {
  exports?: unknown
  bin?: string | Record<string, string>
  main?: string
  types?: string
}

/** Files every release carries besides the entry points (npm adds package.json, README, LICENSE). */
export const REQUIRED_FILES = [
  "package.json",
  "README.md",
  "LICENSE",
  "CHANGELOG.md",
  // bin/pirate.js imports it when it runs from an installed package.
  "dist/bin/pirate.js",
] as const

/** Top-level folders that never ship, also under dist/ (a build that compiled them). */
const FORBIDDEN_DIRS = ["test", "bench", ".ci", ".github", ".tmp", ".scratch", "coverage"]
const FORBIDDEN_FILE = /(\.log|\.tgz|\.tsbuildinfo)$|(^|\/)\.env$/

/**
 * Problems with a tarball's contents, one line each; empty when it can be published.
 * @param files - paths inside the tarball, as `npm pack --json` lists them
 * @param manifest - the package.json that was packed
 * @param read - the text of a listed file (markdown and source maps are read)
 */
export function packProblems(
  files: readonly string[],
  manifest: PackageManifest,
  read: (path: string) => string,
): string[] {
  const problems: string[] = []
  const listed = new Set(files)

  for (const path of [...REQUIRED_FILES, ...entryPoints(manifest)]) {
    if (!listed.has(path)) problems.push(`${path} is missing`)
  }
  if (!files.some((f) => f.startsWith("docs/") && f.endsWith(".md"))) {
    problems.push("docs/ is missing: the README links to it")
  }

  for (const path of files) {
    const top = path.startsWith("dist/") ? path.split("/")[1] : path.split("/")[0]
    if (top !== undefined && FORBIDDEN_DIRS.includes(top) && path.includes("/")) {
      problems.push(`${path} must not be published`)
    } else if (FORBIDDEN_FILE.test(path)) {
      problems.push(`${path} must not be published`)
    }
  }

  for (const path of files) {
    if (path.endsWith(".md")) {
      for (const target of relativeLinks(read(path))) {
        const resolved = resolveLink(path, target)
        if (resolved === undefined) {
          problems.push(`${path} links to ${target}, outside the package`)
        } else if (!listed.has(resolved) && !files.some((f) => f.startsWith(`${resolved}/`))) {
          problems.push(`${path} links to ${target}, which is not in the package`)
        }
      }
    } else if (path.endsWith(".map")) {
      for (const source of missingSources(path, read(path), listed)) {
        problems.push(`${path} maps ${source}, which is not in the package`)
      }
    }
  }
  return problems
}

/** Every file package.json points at: export targets (all conditions), bins, main and types. */
export function entryPoints(manifest: PackageManifest): string[] {
  const targets: string[] = []
  const walk = (value: unknown): void => {
    if (typeof value === "string") targets.push(value)
    else if (value !== null && typeof value === "object") Object.values(value).forEach(walk)
  }
  walk(manifest.exports)
  walk(manifest.bin)
  walk(manifest.main)
  walk(manifest.types)
  return [...new Set(targets.map((t) => posix.normalize(t)))]
}

/**
 * The link targets of a markdown text that are neither absolute URLs nor anchors of the same
 * page: inline links and images, reference definitions, and href/src of inline HTML. Code
 * (fenced blocks and `spans`) holds no links.
 */
export function relativeLinks(markdown: string): string[] {
  const text = markdown
    .replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "")
    .replace(/`[^`\n]*`/g, "")
  const targets = [
    ...[...text.matchAll(/\]\(\s*(?:<([^>\n]+)>|([^\s)]+))(?:\s+"[^"]*")?\s*\)/g)].map(
      (m) => m[1] ?? m[2],
    ),
    ...[...text.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)].map((m) => m[1]),
    ...[...text.matchAll(/\b(?:href|src)="([^"]+)"/g)].map((m) => m[1]),
  ]
  return targets.filter(
    (t): t is string =>
      t !== undefined &&
      !t.startsWith("#") &&
      !t.startsWith("//") &&
      !/^[a-z][a-z\d+.-]*:/i.test(t),
  )
}

/** The packed path a relative link from `from` names (anchor and query dropped), or undefined outside the package. */
export function resolveLink(from: string, target: string): string | undefined {
  const path = decodeURIComponent(target.replace(/[#?].*$/, ""))
  const resolved = posix.normalize(posix.join(posix.dirname(from), path)).replace(/\/$/, "")
  return resolved === ".." || resolved.startsWith("../") || posix.isAbsolute(resolved)
    ? undefined
    : resolved
}

/** The sources a source map names that are neither embedded (sourcesContent) nor packed. */
export function missingSources(
  mapPath: string,
  text: string,
  listed: ReadonlySet<string>,
): string[] {
  let map: { sources?: unknown; sourceRoot?: unknown; sourcesContent?: unknown }
  try {
    map = JSON.parse(text) as typeof map
  } catch {
    return ["(an unreadable map)"]
  }
  const sources = Array.isArray(map.sources) ? (map.sources as unknown[]) : []
  const contents = Array.isArray(map.sourcesContent) ? (map.sourcesContent as unknown[]) : []
  const root = typeof map.sourceRoot === "string" ? map.sourceRoot : ""
  return sources.flatMap((source, i) => {
    if (typeof contents[i] === "string") return []
    if (typeof source !== "string") return ["(a source without a name)"]
    const resolved = resolveLink(mapPath, posix.join(root, source))
    return resolved !== undefined && listed.has(resolved) ? [] : [source]
  })
}
