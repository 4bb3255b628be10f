// Redis stopped for 30 s under load, then started again (empty: it keeps
// nothing): sends on every instance keep being acked, and afterwards every
// subscriber on every instance has every message, in order.

import { test } from "node:test";

import { redisFaultUnderLoad } from "./lib.js";

test("Redis stopped for 30 s under load: sends keep acking, everything arrives in order afterwards", async () => {
  await redisFaultUnderLoad({ begin: "redis/stop", end: "redis/start", faultMs: 30_000 });
});
