import { debuglog } from "node:util"

/** Protocol trace, enabled with `NODE_DEBUG=pirate`. */
export const debug = debuglog("pirate")
