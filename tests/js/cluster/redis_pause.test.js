// Redis frozen with SIGSTOP under load (connections stay open, nothing is
// answered, as with a hung host) for 15 s, then SIGCONT: sends on every
// instance keep being acked, and afterwards every subscriber on every
// instance has every message, in order.

import { test } from "node:test";

import { redisFaultUnderLoad } from "./lib.js";

test("Redis paused (SIGSTOP) for 15 s under load: sends keep acking, everything arrives in order afterwards", async () => {
  await redisFaultUnderLoad({ begin: "redis/pause", end: "redis/resume", faultMs: 15_000 });
});
